"""tune_malloc: freed large blocks are reused instead of being mapped afresh."""

import subprocess
import sys

import pytest

from invblocks.runtime import tune_malloc

PROBE = """
import resource, sys
import torch
import invblocks.plugins  # the library loaded, then tuned, as the command line does it
if sys.argv[1] == "tuned":
    from invblocks.runtime import tune_malloc
    assert tune_malloc()
def step():
    for _ in range(8):
        t = torch.ones(64 * 2**20 // 4)  # 64 MiB, every page written
        del t
step()  # the heap settles: small allocations made meanwhile can hold a freed block apart
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step()  # a training loop's steady state: the same sizes again
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
    # plain: every 64 MiB tensor is mapped and faulted in afresh (8 times); tuned: once the
    # heap has settled, freed pages are reused (page size does not matter for the ratio)
    assert tuned * 3 < plain, (plain, tuned)


def test_tune_malloc_rejects_bad_thresholds():
    with pytest.raises(ValueError, match="positive byte count"):
        tune_malloc(0)


def test_resolve_device_names_and_errors(monkeypatch):
    import torch

    from invblocks.runtime import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "", "mps"):
        with pytest.raises(ValueError, match="expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
            resolve_device(bad)
    # no GPU: auto is the CPU, cuda is an error that says what PyTorch sees
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"'cuda:1' asked for, but PyTorch sees no CUDA GPU"):
        resolve_device("cuda:1")
    # two GPUs: auto is the first, or this torchrun process's own; indices are checked
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index wins
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(
        ValueError, match=r"asked for GPU 2, but PyTorch sees 2 \(cuda:0 to cuda:1\)"
    ):
        resolve_device("auto")
