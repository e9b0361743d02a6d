"""Density models of a learned codec's latents, and their entropy coding with ``constriction``.

* :class:`FactorizedDensity`: a learned, monotone cumulative per channel (Balle et al. 2018's
  factorised prior, CompressAI's ``EntropyBottleneck``) for the hyper-latent ``z``;
* :func:`gaussian_likelihood`: the probability of an integer-spaced value under a Gaussian
  of a given mean and scale integrated over a unit bin (the Gaussian conditional of ``y``);
* :data:`SCALES`: the 64 scales the coder uses, so that the decoder's choice of a model
  does not hang on the last bit of a float.

The coder itself is ``constriction``'s asymmetric numeral system (a maintained library;
invblocks writes no coder).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LIKELIHOOD_BOUND",
    "SCALES",
    "SCALE_BOUND",
    "FactorizedDensity",
    "gaussian_likelihood",
    "lower_bound",
    "scale_indexes",
]

SCALE_BOUND = 0.11
"""The smallest scale of the Gaussian conditional."""
LIKELIHOOD_BOUND = 1e-9
"""The smallest likelihood a rate term counts (so that a value in a far tail costs 30 bits,
not infinity)."""
SCALES = torch.exp(torch.linspace(math.log(SCALE_BOUND), math.log(256.0), 64, dtype=torch.float64))
"""The 64 scales the coder uses, log-spaced from 0.11 to 256 (a value's scale is rounded up
to the next one)."""


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, bound: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound  # type: ignore[attr-defined]
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        passes = (x >= ctx.bound) | (grad < 0)  # type: ignore[attr-defined]
        return grad * passes.to(grad.dtype), None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    """``max(x, bound)`` whose gradient still flows where it would raise ``x`` above the bound."""
    return _LowerBound.apply(x, bound)  # type: ignore[no-any-return]


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x * (2.0**-0.5))


def gaussian_likelihood(v: Tensor, scale: Tensor) -> Tensor:
    """The probability of the unit bin around ``v`` (the value minus its mean) under a zero-mean
    Gaussian of ``scale`` (bounded below by :data:`SCALE_BOUND`), itself bounded below by
    :data:`LIKELIHOOD_BOUND`. Any shape; ``v`` and ``scale`` broadcast."""
    scale = lower_bound(scale, SCALE_BOUND)
    v = v.abs()
    p = _normal_cdf((0.5 - v) / scale) - _normal_cdf((-0.5 - v) / scale)
    return lower_bound(p, LIKELIHOOD_BOUND)


def scale_indexes(scale: Tensor) -> Tensor:
    """The index in :data:`SCALES` of the smallest table scale at least ``scale`` (int64)."""
    table = SCALES.to(scale.device)
    return torch.searchsorted(
        table, scale.double().clamp(SCALE_BOUND, float(table[-1])).contiguous()
    )


class FactorizedDensity(nn.Module):
    """A learned density per channel, for values quantised to a unit grid.

    Each channel's cumulative is ``sigmoid(f(v))`` with ``f`` a monotone network ``1 -> 3 ->
    3 -> 3 -> 3 -> 1`` (softplus-positive matrices, biases, ``tanh`` gated non-linearities).
    ``quantiles`` holds, per channel, the values at which the cumulative is ``tail/2``, ``1/2``
    and ``1 - tail/2``: :meth:`solve_quantiles` finds them by bisection (the cumulative is
    monotone), so that no auxiliary optimiser is needed; the coder uses the median to centre
    the quantisation and the tails to bound the alphabet.

    Arguments:
        channels: ``C``.
        filters: The hidden widths.
        init_scale: The initial spread of each density.
        tail_mass: The mass left out of the coded range.

    Shapes:
        :meth:`likelihood`: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(
        self,
        channels: int,
        filters: tuple[int, ...] = (3, 3, 3, 3),
        init_scale: float = 10.0,
        tail_mass: float = 1e-9,
    ) -> None:
        super().__init__()
        self.channels, self.tail_mass = channels, tail_mass
        widths = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = math.log(math.expm1(1.0 / scale / widths[i + 1]))
            shape = (channels, widths[i + 1], widths[i])
            self.matrices.append(nn.Parameter(torch.full(shape, init)))
            self.biases.append(nn.Parameter(torch.rand(channels, widths[i + 1], 1) - 0.5))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))
        q = torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1)
        self.quantiles = nn.Parameter(q, requires_grad=False)

    def logits_cdf(self, v: Tensor) -> Tensor:
        """``f(v)`` for values ``(C, 1, n)``: ``(C, 1, n)``."""
        logits = v
        for i, matrix in enumerate(self.matrices):
            logits = torch.matmul(F.softplus(matrix), logits) + self.biases[i]
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i]) * torch.tanh(logits)
        return logits

    def likelihood(self, z: Tensor) -> Tensor:
        """The mass of the unit bin around each value of ``z`` ``(B, C, H, W)``, bounded below
        by :data:`LIKELIHOOD_BOUND`."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        # evaluate in the tail where the sigmoid is not saturated: cdf(-x) = 1 - cdf(x)
        sign = torch.where(lower + upper > 0, -1.0, 1.0).to(v.dtype).detach()
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        p = p.reshape(c, b, h, w).permute(1, 0, 2, 3)
        return lower_bound(p, LIKELIHOOD_BOUND)

    def medians(self) -> Tensor:
        """Each channel's median ``(C,)`` (as last solved)."""
        return self.quantiles[:, 0, 1].detach()

    @torch.no_grad()
    def solve_quantiles(self, iterations: int = 64) -> None:
        """Set ``quantiles`` to where each channel's cumulative is ``tail/2``, ``1/2`` and
        ``1 - tail/2``, by bisection."""
        target = math.log(2.0 / self.tail_mass - 1.0)
        targets = torch.tensor([-target, 0.0, target], dtype=torch.float64)
        dtype = self.matrices[0].dtype
        lo = torch.full((self.channels, 1, 3), -1.0, dtype=torch.float64)
        hi = torch.full((self.channels, 1, 3), 1.0, dtype=torch.float64)
        for _ in range(60):  # widen until the targets are bracketed
            f_lo = self.logits_cdf(lo.to(dtype)).double()
            f_hi = self.logits_cdf(hi.to(dtype)).double()
            if bool((f_lo <= targets).all() and (f_hi >= targets).all()):
                break
            lo = torch.where(f_lo > targets, lo * 2, lo)
            hi = torch.where(f_hi < targets, hi * 2, hi)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            above = self.logits_cdf(mid.to(dtype)).double() > targets
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid)
        self.quantiles.copy_(((lo + hi) / 2).to(self.quantiles.dtype))

    @torch.no_grad()
    def coding_tables(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(pmf, minima, medians)``: per channel, the masses ``(C, L)`` (float64, zero
        padded) of the integers ``-minima[c] .. maxima[c]`` around the median (the tails'
        mass added to the end bins), ``minima`` ``(C,)`` int64 and the medians ``(C,)``
        float64."""
        med = self.quantiles[:, 0, 1].double()
        minima = torch.ceil(med - self.quantiles[:, 0, 0].double()).clamp_min(0).long()
        maxima = torch.ceil(self.quantiles[:, 0, 2].double() - med).clamp_min(0).long()
        length = int((minima + maxima).max()) + 1
        steps = torch.arange(length, dtype=torch.float64)
        values = med[:, None] - minima[:, None].double() + steps[None]  # (C, L)
        dtype = self.matrices[0].dtype
        lower = self.logits_cdf((values - 0.5)[:, None].to(dtype)).double()[:, 0]
        upper = self.logits_cdf((values + 0.5)[:, None].to(dtype)).double()[:, 0]
        cdf_lo, cdf_hi = torch.sigmoid(lower), torch.sigmoid(upper)
        valid = steps[None] <= (minima + maxima)[:, None].double()
        pmf = (cdf_hi - cdf_lo).clamp_min(0)
        first = torch.zeros_like(pmf)
        first[:, 0] = cdf_lo[:, 0]  # the mass below the range goes to its first bin
        last_idx = (minima + maxima)[:, None]
        pmf = pmf + first
        tail = 1.0 - cdf_hi.gather(1, last_idx)
        pmf = pmf.scatter_add(1, last_idx, tail.clamp_min(0))
        pmf = torch.where(valid, pmf, torch.zeros_like(pmf))
        return pmf, minima, med


def as_words(data: bytes) -> np.ndarray:
    """A coder's compressed words from bytes (little-endian 32-bit)."""
    if len(data) % 4 or not data:
        raise ValueError(f"expected a bitstream of whole 32-bit words; received {len(data)} bytes")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)
