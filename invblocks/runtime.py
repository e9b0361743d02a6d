"""Where computation runs, and process-wide settings that make large-image work faster on
Linux CPUs.

:func:`resolve_device` turns a user's device name (``"auto"``, ``"cpu"``, ``"cuda"``,
``"cuda:1"``, ...) into a :class:`torch.device`, with a clear error for one this machine
does not have.

Convolutions over whole frames allocate and free many tensors of tens to hundreds of
megabytes. glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MB
by default) with a fresh ``mmap`` and returns it to the system on ``free``, so each such
tensor is paid for again in page faults: embedding a 428x240 five-frame clip spent a quarter
of its CPU time in the kernel. :func:`tune_malloc` keeps freed memory in the heap for reuse.

The ``invblocks`` command line calls it at start-up; Python users call it once themselves
(it changes the whole process, so importing invblocks never does).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch

__all__ = ["PRECISIONS", "fast_bfloat16", "resolve_device", "resolve_precision", "tune_malloc"]

PRECISIONS = ("float32", "bfloat16", "auto")
"""The precisions inference runs in, the couplings' subnets in float32 or bfloat16
(:func:`~invblocks.blocks.dense.set_subnet_dtype`), ``auto`` choosing bfloat16 where the device has
bfloat16 units."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc(threshold: int = 2**31 - 1) -> bool:
    """Serve blocks up to ``threshold`` bytes from the heap and keep freed memory there.

    Sets glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (the same as the environment
    variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``). Peak memory stays
    about the same (the heap is reused instead of remapped), but memory freed after a peak is
    not returned to the system until the process ends. Freed blocks are reused once the heap
    has settled (a training loop's steady state: the same sizes step after step); in the first
    few allocations small blocks made meanwhile can hold a freed block apart. Measured (and
    tested) called after the library's plugins module is imported, as the command line does.

    Arguments:
        threshold: Bytes; blocks below it come from the heap (glibc caps it near 2 GiB).

    Returns:
        ``True`` when glibc accepted both settings; ``False`` elsewhere (macOS, Windows,
        musl), where it does nothing.

    Example:
        >>> from invblocks.runtime import tune_malloc
        >>> tune_malloc() in (True, False)
        True
    """
    if threshold <= 0:
        raise ValueError(
            f"tune_malloc: threshold must be a positive byte count; received {threshold}"
        )
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    value = min(int(threshold), 2**31 - 1)
    return bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, value))


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The :class:`torch.device` that ``name`` asks for, checked against this machine.

    ``"auto"`` (or ``None``) is the first CUDA device when PyTorch sees one, else the CPU.
    Under ``torchrun`` (``LOCAL_RANK`` set), ``"auto"`` and a bare ``"cuda"`` mean this
    process's own GPU, ``cuda:LOCAL_RANK``.

    Raises:
        ValueError: an unknown device name, or a device this machine does not have (CUDA
            without a CUDA build of PyTorch or a visible GPU, or an index beyond the GPUs).

    Example:
        >>> from invblocks.runtime import resolve_device
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name is None or name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"unknown device {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from err
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ValueError(
            f"device {str(name)!r} is not supported: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        )
    if not torch.cuda.is_available():
        build = "a CUDA build" if torch.version.cuda else "a CPU-only build"
        raise ValueError(
            f"device {str(name)!r} asked for, but PyTorch sees no CUDA GPU "
            f"(torch {torch.__version__}, {build}); use device 'cpu' or 'auto'"
        )
    index = device.index
    if index is None:
        index = int(os.environ.get("LOCAL_RANK", "0"))
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"device {str(name)!r} asked for GPU {index}, but PyTorch sees {count} "
            f"(cuda:0 to cuda:{count - 1})"
        )
    return torch.device("cuda", index)


def fast_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` has bfloat16 matrix units, so that bfloat16 autocast pays.

    A CUDA device that supports bfloat16, or a CPU with AMX tiles or AVX-512 BF16
    instructions (which oneDNN's bfloat16 convolutions use). On other CPUs bfloat16 is
    emulated and a training step is several times slower than in float32 (see the
    benchmarks guide). Other devices, and CPUs that this build of PyTorch cannot probe,
    count as fast: the check only warns against a known loss.

    Example:
        >>> from invblocks.runtime import fast_bfloat16
        >>> fast_bfloat16("cpu") in (True, False)
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return True
    names = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    probes = [getattr(torch.cpu, name) for name in names if hasattr(torch.cpu, name)]
    return not probes or any(bool(probe()) for probe in probes)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"float32"`` or ``"bfloat16"`` for a precision of :data:`PRECISIONS` on ``device``:
    ``"auto"`` is bfloat16 where :func:`fast_bfloat16` says the device has bfloat16 units.

    Example:
        >>> resolve_precision("float32", "cpu")
        'float32'
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}; received {precision!r}"
        )
    if precision == "auto":
        return "bfloat16" if fast_bfloat16(device) else "float32"
    return precision
