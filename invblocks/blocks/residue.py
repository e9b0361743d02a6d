"""Secrets hidden in the residue of an 8-bit image: quantisation index modulation as an
exact bijection, the start of a hiding network."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..block import Block, Dims, Inversion
from ..registry import register_block

__all__ = ["ResidueHiding", "hides_in_residue", "secret_phases"]


def secret_phases(
    secrets: int, height: int, width: int, device: Any = None, *, checkerboard: bool = False
) -> Tensor:
    """Which secret each pixel carries, ``(secrets, height, width)`` booleans: every pixel
    for one secret; for two to four the pixels of each ``2 x 2`` cell in turn (cell position
    ``2*(i % 2) + j % 2``, secret ``position % secrets``: two secrets on alternate columns),
    so that every secret is sampled in every cell; with ``checkerboard``, two secrets on a
    checkerboard instead (secret ``(i + j) % 2``: each pixel's four neighbours carry the
    other)."""
    if secrets == 1:
        return torch.ones(1, height, width, dtype=torch.bool, device=device)
    i = torch.arange(height, device=device)[:, None] % 2
    j = torch.arange(width, device=device)[None, :] % 2
    owner = (i + j) % 2 if secrets == 2 and checkerboard else (2 * i + j) % secrets
    return torch.stack([owner == k for k in range(secrets)])


class ResidueHiding(Block):
    """Hide the secret slots in the residue, modulo ``levels``, of an 8-bit image of the
    cover (``EXACT``): quantisation index modulation.

    Slots ``[cover; secret_1; ...]`` of ``channels`` each, in ``[0, 1]``. Each pixel carries
    one secret (all of them with one secret; with two to four, the pixels of each ``2 x 2``
    cell in turn, or for two a checkerboard with ``checkerboard``, :func:`secret_phases`).
    In units of the ``L = 2**bits - 1`` grid, with ``u = L * cover`` and ``t = (levels - 1) *
    secret``, the first output slot is the ``y`` nearest to ``u`` with ``y = t (mod
    levels)``, kept within ``[0, L]``: rounded to 8 bits it differs from the cover by at most
    ``levels / 2`` grid steps (``levels`` near black and white) and still holds the secret to
    one of ``levels`` values. The other slots hold what ``y`` does not: at a pixel that
    carries secret ``k``, slot ``k`` holds ``u - y``; elsewhere it holds secret ``k`` less
    its interpolation from its carried samples (a normalised 3 x 3 tent filter: bilinear on
    their lattice of period 2, the mean of the four neighbours on a checkerboard). The
    inverse reads ``t`` back from ``y`` modulo ``levels``; with those slots zero (as a
    channel squeeze that keeps the first slot fills them) it restores the cover as the
    embedding itself and each secret from its samples.

    With ``levels = 16``, on photographs: the embedding is 34.8 dB from the cover (a uniform
    error of +-8 steps), one secret restores to 16 values (34.4 dB), two to four secrets,
    sampled once or twice per cell and interpolated, to 27-43 dB (most near 29-30). It is a
    bijection of the reals (a secret out of ``[0, 1]`` wraps, and the wrap count is kept in
    the other slots, in steps of 4 that a predicted offset does not reach), piecewise linear
    with log-determinant ``C H W log((levels - 1) / L)``.

    With ``difference=r`` each secret is hidden as its difference ``d`` from the cover (for
    slots that resemble it: the frames of a clip), companded so that the small differences
    keep the fine levels: ``t = m + m * asinh(d / r) / asinh(1 / r)`` with ``m = (levels -
    1) // 2``, a level, so that ``d = 0`` is kept exactly and ``d = +-1`` maps to the levels
    ``0`` and ``2 m``; a difference beyond ``+-1`` is first brought into it by a multiple
    ``2 w`` of 2, and ``w`` is the wrap count (so that a mispredicted wrap in the inverse
    costs 2, not the compander's expansion). The other pixels interpolate the difference,
    not the secret, and the inverse adds the restored cover back. The log-determinant then
    depends on ``d``.

    Arguments:
        dims_in: Input shapes (optional).
        channels: Channels of one slot (3 for RGB).
        levels: Values each secret keeps (``2`` to ``(L + 1) / 2``; at least 4 with
            ``difference``, which uses ``2 m + 1`` of them: all for an odd ``levels``).
        bits: Bits of the embedding's grid (8).
        secrets: The number ``k`` of secret slots after the cover; channels after them
            pass through unchanged (the high bands after a Haar downscale). ``None``: every
            slot after the cover.
        difference: Hide each secret's difference from the cover, companded with this scale
            (``None``: the secret itself, uniformly).
        checkerboard: Two secrets take turns over a checkerboard rather than alternate
            columns (better interpolated: 0.2 dB on a clip's frames).

    Shapes:
        ``(B, (1 + k) * channels + P, H, W) -> same``, ``1 <= k <= 4``, ``P`` channels passed
        through (``0`` unless ``secrets`` is given); ``H`` and ``W`` at least 2 when ``k > 1``.

    References:
        Chen and Wornell, "Quantization index modulation: a class of provably good methods
        for digital watermarking and information embedding", IEEE Trans. Inf. Theory 2001.
    """

    inversion = Inversion.EXACT

    def __init__(
        self,
        dims_in: Any = None,
        *,
        channels: int = 3,
        levels: int = 16,
        bits: int = 8,
        secrets: int | None = None,
        difference: float | None = None,
        checkerboard: bool = False,
    ) -> None:
        super().__init__(dims_in)
        grid = 2**bits - 1
        lowest = 2 if difference is None else 4
        if channels < 1 or not 1 <= bits <= 16 or not lowest <= levels <= (grid + 1) // 2:
            raise ValueError(
                f"ResidueHiding: need channels >= 1, bits in 1..16 and levels in {lowest}.."
                f"{(grid + 1) // 2}; received channels={channels}, bits={bits}, levels={levels}"
            )
        if (secrets is not None and not 1 <= secrets <= 4) or (
            difference is not None and not difference > 0
        ):
            raise ValueError(
                "ResidueHiding: need secrets in 1..4 (or None) and a difference scale > 0 (or "
                f"None); received secrets={secrets}, difference={difference}"
            )
        self.channels, self.levels, self.bits = channels, levels, bits
        self.secrets, self.difference, self.checkerboard = secrets, difference, checkerboard
        self.grid = float(grid)
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _slots(self, channels: int) -> int:
        """The slots hidden: the cover and its secrets."""
        return channels // self.channels if self.secrets is None else 1 + self.secrets

    def _split(self, x: Tensor) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
        c, n = self.channels, self._slots(x.shape[1])
        slots = [x[:, k * c : (k + 1) * c] for k in range(n)]
        masks = secret_phases(
            n - 1, x.shape[-2], x.shape[-1], x.device, checkerboard=self.checkerboard
        ).to(x.dtype)
        return slots[0], slots[1:], masks, x[:, n * c :]

    def _compand(self, d: Tensor) -> tuple[Tensor, Tensor]:
        """The level ``t`` of a difference ``d`` and ``log dt/dd``."""
        r, m = float(self.difference or 1.0), float((self.levels - 1) // 2)
        gain = m / math.asinh(1 / r)
        z = d / r
        return m + gain * torch.asinh(z), math.log(gain / r) - 0.5 * torch.log1p(z * z)

    def _expand(self, t: Tensor) -> Tensor:
        """Inverse of :meth:`_compand`: the difference of a level."""
        r, m = float(self.difference or 1.0), float((self.levels - 1) // 2)
        return r * torch.sinh((t - m) * math.asinh(1 / r) / m)

    @staticmethod
    def _fill(values: Tensor, mask: Tensor, secrets: int) -> Tensor:
        """``values`` interpolated from where ``mask`` holds: a normalised 3 x 3 tent filter
        of the carried samples (bilinear on a lattice of period 2), at every pixel; with one
        secret every pixel carries it (decided by the count, not the mask's values, so that
        a tracer sees no data-dependent branch)."""
        if secrets == 1:
            return values
        tent = values.new_tensor([1.0, 2.0, 1.0])
        kernel = (tent[:, None] * tent[None, :])[None, None]
        c = values.shape[1]
        total = F.conv2d(values * mask, kernel.expand(c, 1, 3, 3), padding=1, groups=c)
        return total / F.conv2d(mask[None, None], kernel, padding=1)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        cover, secrets, masks, passed = self._split(xs[0])
        k, grid = float(self.levels), self.grid
        if self.difference is not None:  # hide, and interpolate, each secret's difference
            secrets = [s - cover for s in secrets]
        carried = sum(m * s for m, s in zip(masks, secrets, strict=True))
        u = grid * cover
        if self.difference is None:
            t = (k - 1) * carried
            log_det = cover.new_full((cover.shape[0],), cover[0].numel() * math.log((k - 1) / grid))
            wraps = torch.floor((t + 0.5) / k)
            residue = t - k * wraps  # in [-0.5, k - 0.5): away from the grid's rounding edges
        else:  # a difference beyond +-1 wraps by 2: its level stays in [0, 2m]
            wraps = torch.round(carried / 2)
            residue, slope = self._compand(carried - 2 * wraps)
            log_det = (slope - math.log(grid)).flatten(1).sum(1)
        y = residue + k * torch.round((u - residue) / k)
        inside = (u >= 0) & (u <= grid)  # keep the embedding on the grid where the cover is
        y = torch.where(
            inside & (y < -0.5), y + k, torch.where(inside & (y > grid + 0.5), y - k, y)
        )
        # |u - y| < k; the wrap count, 0 for a secret in [0, 1], takes steps of 4 (in units
        # of the image) that no prediction of the offset reaches
        offset = (u - y) / grid + 4 * wraps
        rest = [
            m * offset + (1 - m) * (s - self._fill(s, m, len(masks)))
            for m, s in zip(masks, secrets, strict=True)
        ]
        return torch.cat([y / grid, *rest, passed], dim=1), log_det

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        embedding, rest, masks, passed = self._split(ys[0])
        k, grid = float(self.levels), self.grid
        y = grid * embedding
        offset = sum(m * r for m, r in zip(masks, rest, strict=True))
        wraps = torch.floor((offset + 2) / 4)
        u = y + grid * (offset - 4 * wraps)
        residue = torch.remainder(y + 0.5, k) - 0.5
        if self.difference is None:
            carried = (residue + k * wraps) / (k - 1)
            log_det = y.new_full((y.shape[0],), embedding[0].numel() * math.log((k - 1) / grid))
        else:
            base = self._expand(residue)
            carried = base + 2 * wraps
            log_det = (self._compand(base)[1] - math.log(grid)).flatten(1).sum(1)
        secrets = [
            m * carried + (1 - m) * (r + self._fill(carried, m, len(masks)))
            for m, r in zip(masks, rest, strict=True)
        ]
        if self.difference is not None:
            secrets = [s + u / grid for s in secrets]
        return torch.cat([u / grid, *secrets, passed], dim=1), -log_det

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_count(dims, 1, "input")
        ch, h, w = dims[0]
        if self.secrets is None and (ch % self.channels or not 2 <= ch // self.channels <= 5):
            raise self._shape_error(
                f"a cover and 1-4 secrets of channels={self.channels} each", dims
            )
        if self.secrets is not None and ch < (1 + self.secrets) * self.channels:
            raise self._shape_error(
                f"a cover and {self.secrets} secrets of channels={self.channels} each first",
                dims,
            )
        if self._slots(ch) > 2 and min(h, w) < 2:
            raise self._shape_error("a height and width of at least 2 for 2-4 secrets", dims)
        return [tuple(dims[0])]

    _input_dims = _output_dims

    def extra_repr(self) -> str:
        extra = "" if self.secrets is None else f", secrets={self.secrets}"
        if self.difference is not None:
            extra += f", difference={self.difference}"
        if self.checkerboard:
            extra += ", checkerboard=True"
        return (
            f"channels={self.channels}, levels={self.levels}, bits={self.bits}{extra}, "
            f"{super().extra_repr()}"
        )


register_block(ResidueHiding)


def hides_in_residue(network: nn.Module) -> bool:
    """Whether ``network`` holds a :class:`ResidueHiding`: its embedding carries images in
    the residue of its 8-bit values, which a lossy codec (JPEG) destroys."""
    return any(isinstance(m, ResidueHiding) for m in network.modules())
