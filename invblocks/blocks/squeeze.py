"""IICNet's channel squeeze: group mean forward, tiling inverse."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..block import Block, Dims, Inversion
from ..registry import register_block

__all__ = ["ChannelSqueeze"]


class ChannelSqueeze(Block):
    """Average ``G = C_in / C_out`` consecutive groups of ``C_out`` channels (``LOSSY``).

    Forward: ``e = (1/G) * sum_g y[g*C_out:(g+1)*C_out]``. Inverse: ``e`` tiled ``G`` times,
    a right inverse (``forward(inverse(e)) == e``). The network before it must learn to make
    its output nearly group-constant; the embedding loss drives that.

    Arguments:
        dims_in: Input shapes (optional).
        out_channels: ``C_out`` (3 for an RGB embedding, 1 for grayscale).

    Shapes:
        ``(B, G*C_out, H, W) -> (B, C_out, H, W)``

    Example:
        >>> cs = ChannelSqueeze(out_channels=3)
        >>> cs(torch.ones(1, 15, 2, 2)).shape
        torch.Size([1, 3, 2, 2])
    """

    inversion = Inversion.LOSSY

    def __init__(self, dims_in: Any = None, *, out_channels: int = 3) -> None:
        super().__init__(dims_in)
        if out_channels < 1:
            raise ValueError(f"ChannelSqueeze: out_channels must be >= 1; received {out_channels}")
        self.out_channels = out_channels
        self.in_channels = self.dims_in[0][0] if self.dims_in else None
        if self.dims_in:
            self.output_dims(self.dims_in)

    def _groups(self, c_in: int) -> int:
        return c_in // self.out_channels

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (x,) = xs
        b, c_in, h, w = x.shape
        return x.reshape(b, self._groups(c_in), self.out_channels, h, w).mean(dim=1), None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (y,) = ys
        groups = self._groups(self.in_channels) if self.in_channels else 1
        return y.repeat(1, groups, 1, 1), None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.in_channels)
        c, h, w = dims[0]
        if c % self.out_channels:
            raise self._shape_error(
                f"a channel count divisible by out_channels={self.out_channels}", dims
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
        return f"{self.in_channels} -> {self.out_channels}, {super().extra_repr()}"


register_block(ChannelSqueeze)
