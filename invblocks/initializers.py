"""Parameter initialisation that draws only from an explicit ``torch.Generator``.

Every layer here is created on the meta device (as :func:`torch.nn.utils.skip_init` does), so
building it consumes no random numbers; its weights are then drawn from ``generator`` (or, when it
is ``None``, from torch's default generator, as ``torch.nn.init`` does).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["conv2d", "orthogonal"]


def _uninitialised_conv(c_in: int, c_out: int, kernel_size: int) -> nn.Conv2d:
    """A convolution with empty parameters, built without drawing a random number: made on
    the meta device (as :func:`torch.nn.utils.skip_init` does), then given real empty
    tensors (``skip_init``'s ``to_empty`` would route through torch's symbolic-shape
    machinery and import sympy, half a second of every command's start)."""
    conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, device="meta")
    conv.weight = nn.Parameter(torch.empty(conv.weight.shape))
    conv.bias = nn.Parameter(torch.empty(c_out))
    return conv


def conv2d(
    c_in: int,
    c_out: int,
    kernel_size: int,
    *,
    init: str = "default",
    scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> nn.Conv2d:
    """A ``(c_in -> c_out)`` convolution with 'same' padding and bias, initialised by ``init``.

    ``init`` is ``"default"`` (PyTorch's own Conv2d initialisation), ``"xavier"``
    (Xavier-normal times ``scale``, zero bias) or ``"zeros"``.
    """
    conv = _uninitialised_conv(c_in, c_out, kernel_size)
    bias = conv.bias
    assert bias is not None  # made with one
    with torch.no_grad():
        if init == "default":
            bound = 1.0 / math.sqrt(c_in * kernel_size * kernel_size)
            nn.init.uniform_(conv.weight, -bound, bound, generator=generator)
            nn.init.uniform_(bias, -bound, bound, generator=generator)
        elif init == "xavier":
            nn.init.xavier_normal_(conv.weight, generator=generator)
            conv.weight.mul_(scale)
            bias.zero_()
        elif init == "zeros":
            conv.weight.zero_()
            bias.zero_()
        else:
            raise ValueError(f"init must be 'default', 'xavier' or 'zeros'; received {init!r}")
    return conv


def orthogonal(
    rows: int,
    cols: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A random ``(rows, cols)`` matrix with orthonormal columns (or rows, if wider).

    Drawn as the Q factor of a Gaussian matrix with the signs fixed by R's diagonal, which
    makes the result Haar-distributed.
    """
    a = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)
    if rows < cols:
        q = q.T
    return q.to(dtype)
