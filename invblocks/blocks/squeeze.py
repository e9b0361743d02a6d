"""IICNet's channel squeeze: group mean forward, tiling inverse."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..block import Block, Dims, Inversion
from ..registry import register_block

__all__ = ["ChannelSqueeze"]


class ChannelSqueeze(Block):
    """Reduce ``G = C_in / C_out`` consecutive groups of ``C_out`` channels to one (``LOSSY``).

    ``mode="mean"`` (IICNet): ``e = (1/G) * sum_g y[g*C_out:(g+1)*C_out]``, and the inverse
    tiles ``e`` ``G`` times. ``mode="first"``: ``e`` is the first group, and the inverse puts
    ``e`` in the groups ``fill`` lists (default: all) and zeros in the others. Both inverses
    are right inverses (``forward(inverse(e)) == e``); the network before the squeeze must
    learn to make the rest of its output consistent with them, which the losses drive.

    ``mode="first"`` lets a network start at the trivial solution: with identity blocks before
    it, the embedding is the reference slot's image and the restoration repeats it (``fill``
    the slots that hold images, zeros for high-frequency bands after a downscale).

    Arguments:
        dims_in: Input shapes (optional).
        out_channels: ``C_out`` (3 for an RGB embedding, 1 for grayscale).
        mode: ``"mean"`` or ``"first"``.
        fill: With ``mode="first"``, the indices of the groups the inverse fills with ``e``.

    Shapes:
        ``(B, G*C_out, H, W) -> (B, C_out, H, W)``

    Example:
        >>> cs = ChannelSqueeze(out_channels=3)
        >>> cs(torch.ones(1, 15, 2, 2)).shape
        torch.Size([1, 3, 2, 2])
    """

    inversion = Inversion.LOSSY

    def __init__(
        self,
        dims_in: Any = None,
        *,
        out_channels: int = 3,
        mode: str = "mean",
        fill: list[int] | None = None,
    ) -> None:
        super().__init__(dims_in)
        if out_channels < 1:
            raise ValueError(f"ChannelSqueeze: out_channels must be >= 1; received {out_channels}")
        if mode not in ("mean", "first"):
            raise ValueError(f"ChannelSqueeze: mode must be 'mean' or 'first'; received {mode!r}")
        if mode == "mean" and fill is not None:
            raise ValueError("ChannelSqueeze: fill is for mode='first' (the mean's inverse tiles)")
        self.out_channels, self.mode = out_channels, mode
        self.fill = None if fill is None else sorted({int(g) for g in fill})
        self.in_channels = self.dims_in[0][0] if self.dims_in else None
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _groups(self, c_in: int) -> int:
        return c_in // self.out_channels

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (x,) = xs
        b, c_in, h, w = x.shape
        if self.mode == "first":
            return x[:, : self.out_channels], None
        return x.reshape(b, self._groups(c_in), self.out_channels, h, w).mean(dim=1), None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (y,) = ys
        groups = self._groups(self.in_channels) if self.in_channels else 1
        if self.mode == "mean" or self.fill is None:
            return y.repeat(1, groups, 1, 1), None
        zeros = torch.zeros_like(y)
        return torch.cat([y if g in self.fill else zeros for g in range(groups)], dim=1), None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.in_channels)
        c, h, w = dims[0]
        if c % self.out_channels:
            raise self._shape_error(
                f"a channel count divisible by out_channels={self.out_channels}", dims
            )
        if self.fill is not None and (
            0 not in self.fill or self.fill[-1] >= c // self.out_channels
        ):
            raise ValueError(
                f"ChannelSqueeze: fill {self.fill} must hold group 0 and only groups below "
                f"{c // self.out_channels}"
            )
        return [(self.out_channels, h, w)]

    def _input_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.out_channels)
        if self.in_channels is None:
            raise ValueError(
                "ChannelSqueeze was built without dims_in, so its inverse does not know how many "
                "channels to restore; build it with dims_in (e.g. inside a Sequence)"
            )
        _, h, w = dims[0]
        return [(self.in_channels, h, w)]

    def extra_repr(self) -> str:
        mode = "" if self.mode == "mean" else f", mode='first', fill={self.fill}"
        return f"{self.in_channels} -> {self.out_channels}{mode}, {super().extra_repr()}"


register_block(ChannelSqueeze)
