"""Invertible 1x1 convolution (Glow), plain or LU-parameterised."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..block import Block, Dims, Inversion
from ..initializers import orthogonal
from ..mixing import channel_mix
from ..registry import register_block

__all__ = ["InvConv1x1"]


class InvConv1x1(Block):
    """A learned invertible channel mix ``y = W x`` at every pixel, ``(B, C, H, W) -> same``.

    Arguments:
        dims_in: Input shapes; gives ``channels`` when that is not passed.
        channels: ``C``.
        parameterization: ``"lu"`` (``W = P L (U + diag(sign * exp(log_s)))`` with ``P`` a
            fixed permutation buffer: log-determinant in ``O(C)``, inverse by triangular solves)
            or ``"plain"`` (a full ``W`` as in IICNet; log-determinant by ``slogdet``).
        init: ``"orthogonal"`` (random, Glow's and IICNet's), ``"identity"``, or ``"luma"``:
            every 3-channel group mapped to full-range YCbCr (JPEG's matrix), so the first
            channel of each group is its BT.601 luma and a gray colour ``(Y, 0, 0)`` maps back
            to ``R = G = B = Y``.
        generator: Random source for the orthogonal initialisation.

    The log-determinant is ``H * W * log|det W|``. The inverse matrix is formed in float64
    on the weight's device and cast back, as IICNet does, so float32 round trips stay at
    float32 precision even for ill-conditioned ``W``.

    Example:
        >>> conv = InvConv1x1(channels=12, generator=torch.Generator().manual_seed(0))
        >>> x = torch.rand(2, 12, 4, 4)
        >>> torch.allclose(conv.inverse()(conv(x)), x, atol=1e-6)
        True
    """

    inversion = Inversion.EXACT

    def __init__(
        self,
        dims_in: Any = None,
        *,
        channels: int | None = None,
        parameterization: Literal["lu", "plain"] = "lu",
        init: Literal["orthogonal", "identity", "luma"] = "orthogonal",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dims_in)
        channels = self._channels_from_dims(channels, "channels")
        if parameterization not in ("lu", "plain"):
            raise ValueError(
                "InvConv1x1: parameterization must be 'lu' or 'plain'; "
                f"received {parameterization!r}"
            )
        self.channels, self.parameterization, self.init = channels, parameterization, init
        w = _initial(init, channels, generator)
        if parameterization == "plain":
            self.weight = nn.Parameter(w)
        else:
            p, lower, upper = torch.linalg.lu(w)
            s = torch.diagonal(upper)
            self.register_buffer("perm", p)
            self.register_buffer("sign_s", torch.sign(s))
            self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
            self.lower = nn.Parameter(lower * self.lower_mask)
            self.upper = nn.Parameter(torch.triu(upper, 1))
            self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return lower, upper

    def matrix(self) -> Tensor:
        """The ``(C, C)`` matrix ``W``."""
        if self.parameterization == "plain":
            return self.weight
        lower, upper = self._factors()
        return self.perm @ lower @ upper

    @torch.no_grad()
    def set_matrix(self, w: Tensor) -> None:
        """Make ``W`` the invertible ``(C, C)`` matrix ``w`` (a start computed elsewhere, e.g.
        a wavelet or a colour transform fitted to data): the plain weight, or ``w``'s LU
        factors with its permutation and signs."""
        w = torch.as_tensor(w, dtype=torch.float64)
        if w.shape != (self.channels, self.channels):
            raise ValueError(
                f"InvConv1x1.set_matrix: expected a ({self.channels}, {self.channels}) matrix; "
                f"received {tuple(w.shape)}"
            )
        if not bool(torch.isfinite(w).all()) or not float(torch.linalg.cond(w)) < 1e12:
            raise ValueError("InvConv1x1.set_matrix: the matrix must be finite and invertible")
        if self.parameterization == "plain":
            self.weight.copy_(w.to(self.weight))
            return
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.perm.copy_(p.to(self.perm))
        self.sign_s.copy_(torch.sign(s).to(self.sign_s))
        self.lower.copy_((lower * self.lower_mask.double()).to(self.lower))
        self.upper.copy_(torch.triu(upper, 1).to(self.upper))
        self.log_s.copy_(torch.log(torch.abs(s)).to(self.log_s))

    def inverse_matrix(self) -> Tensor:
        """``W^-1``, formed in float64 and cast to the weight's dtype."""
        if self.parameterization == "plain":
            return torch.linalg.inv(self.weight.double()).to(self.weight.dtype)
        lower, upper = (m.double() for m in self._factors())
        eye = torch.eye(self.channels, dtype=torch.float64, device=lower.device)
        inv_l = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        inv_u = torch.linalg.solve_triangular(upper, eye, upper=True)
        return (inv_u @ inv_l @ self.perm.double().T).to(self.lower.dtype)

    def log_abs_det(self) -> Tensor:
        """``log|det W|`` (a scalar)."""
        if self.parameterization == "plain":
            return torch.linalg.slogdet(self.weight)[1]
        return self.log_s.sum()

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (x,) = xs
        return channel_mix(x, self.matrix()), self.log_abs_det() * (x.shape[2] * x.shape[3])

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (y,) = ys
        return channel_mix(y, self.inverse_matrix()), -self.log_abs_det() * (
            y.shape[2] * y.shape[3]
        )

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.channels)
        return [tuple(dims[0])]

    _input_dims = _output_dims

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, parameterization={self.parameterization!r}, {super().extra_repr()}"
        )


_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)


def _initial(init: str, channels: int, generator: torch.Generator | None) -> Tensor:
    if init == "orthogonal":
        return orthogonal(channels, channels, generator=generator)
    if init == "identity":
        return torch.eye(channels)
    if init == "luma":
        if channels % 3:
            raise ValueError(
                f"InvConv1x1: init='luma' needs groups of 3 channels; received {channels}"
            )
        return torch.block_diag(*[_YCBCR] * (channels // 3))
    raise ValueError(
        f"InvConv1x1: init must be 'orthogonal', 'identity' or 'luma'; received {init!r}"
    )


register_block(InvConv1x1)
