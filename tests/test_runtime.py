"""tune_malloc: freed large blocks are reused instead of being mapped afresh."""

import subprocess
import sys

import pytest

from invblocks.runtime import tune_malloc

PROBE = """
import resource, sys
import torch
if sys.argv[1] == "tuned":
    from invblocks.runtime import tune_malloc
    assert tune_malloc()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    t = torch.ones(64 * 2**20 // 4)  # 64 MiB, every page written
    del t
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_tuned_malloc_reuses_freed_blocks():
    plain, tuned = page_faults("plain"), page_faults("tuned")
    # plain: every 64 MiB tensor is mapped and faulted in afresh (8 times); tuned: the first
    # tensor's pages are reused by the next ones (page size does not matter for the ratio)
    assert tuned * 3 < plain, (plain, tuned)


def test_tune_malloc_rejects_bad_thresholds():
    with pytest.raises(ValueError, match="positive byte count"):
        tune_malloc(0)
