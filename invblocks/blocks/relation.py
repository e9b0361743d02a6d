"""IICNet's relation module: a residual cross-image network with a separately learned inverse."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..block import Block, Dims, Inversion
from ..initializers import conv2d
from ..registry import register_block
from .dense import DenseBlock

__all__ = ["RelationBlock", "RelationModule"]


class RelationBlock(nn.Module):
    """One direction of the relation module: ``R(x) = x + 0.2 * [t_1; ...; t_N]``.

    For image slot ``i`` (``c`` channels each): header ``h_i = Conv1x1_i(DB_i(x_i))`` with
    ``width`` channels; tailer ``t_i = DB_i(Conv1x1_i(Conv3x3_i([h_1; ...; h_N])))``.
    Every slot has its own weights. The dense blocks' last convolutions start at zero, so
    ``R`` is the identity at initialisation. The tailers' first convolutions all read the
    same ``[h_1; ...; h_N]``, so they run as one convolution with their weights stacked
    (same result, one larger and faster matrix product; parameters stay per slot).

    Shapes:
        ``(B, N*c, H, W) -> (B, N*c, H, W)``
    """

    def __init__(
        self,
        n_images: int,
        image_channels: int = 3,
        width: int = 64,
        residual_scale: float = 0.2,
        *,
        growth: int = 32,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_images, self.image_channels = n_images, image_channels
        self.width, self.residual_scale = width, residual_scale
        c, g = image_channels, generator
        self.headers = nn.ModuleList(
            nn.Sequential(
                DenseBlock(c, width, growth, generator=g), conv2d(width, width, 1, generator=g)
            )
            for _ in range(n_images)
        )
        self.tailers = nn.ModuleList(
            nn.Sequential(
                conv2d(n_images * width, width, 3, generator=g),
                conv2d(width, width, 1, generator=g),
                DenseBlock(width, c, growth, generator=g),
            )
            for _ in range(n_images)
        )

    def forward(self, x: Tensor) -> Tensor:
        images = x.split(self.image_channels, dim=1)
        h = torch.cat([head(xi) for head, xi in zip(self.headers, images, strict=True)], dim=1)
        tails = cast(list[nn.Sequential], list(self.tailers))
        first = cast(list[nn.Conv2d], [tail[0] for tail in tails])
        weight = torch.cat([conv.weight for conv in first], dim=0)
        bias = torch.cat([cast(Tensor, conv.bias) for conv in first], dim=0)
        u = F.conv2d(h, weight, bias, padding=first[0].padding)
        parts = u.split(self.width, dim=1)
        t = torch.cat([tail[2](tail[1](ui)) for tail, ui in zip(tails, parts, strict=True)], dim=1)
        return x + self.residual_scale * t


class RelationModule(Block):
    """IICNet's relation module (``LEARNED`` inversion kind).

    The forward direction runs one :class:`RelationBlock` and the inverse direction a second,
    independently parameterised one: the inverse is *learned* through the restoration loss,
    not computed. Both start as the identity.

    Arguments:
        dims_in: Input shapes; with ``image_channels`` gives ``n_images`` when not passed.
        n_images: ``N``, the number of images stacked on the channel axis.
        image_channels: Channels per image (3 for RGB).
        width: Hidden width ``nf`` (64 in IICNet).
        growth: Growth of the dense blocks (32 in IICNet).
        residual_scale: Scale of the residual branch (0.2 in IICNet).
        generator: Random source for the initialisation.

    Shapes:
        ``(B, N*image_channels, H, W) -> same``

    Example:
        >>> rel = RelationModule(n_images=2, width=8)
        >>> x = torch.rand(1, 6, 8, 8)
        >>> torch.equal(rel(x), x) and torch.equal(rel.inverse()(x), x)
        True
    """

    inversion = Inversion.LEARNED

    def __init__(
        self,
        dims_in: Any = None,
        *,
        n_images: int | None = None,
        image_channels: int = 3,
        width: int = 64,
        residual_scale: float = 0.2,
        growth: int = 32,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dims_in)
        if n_images is None:
            if not self.dims_in:
                raise ValueError("RelationModule needs `n_images` or `dims_in`")
            c = self.dims_in[0][0]
            if c % image_channels:
                raise self._shape_error(
                    f"channels divisible by image_channels={image_channels}", self.dims_in
                )
            n_images = c // image_channels
        self.n_images, self.image_channels = n_images, image_channels
        self.channels = n_images * image_channels
        if self.dims_in:
            self._check_channels(self.dims_in, self.channels)
        kw: dict[str, Any] = dict(
            width=width, residual_scale=residual_scale, growth=growth, generator=generator
        )
        self.forward_net = RelationBlock(n_images, image_channels, **kw)
        self.inverse_net = RelationBlock(n_images, image_channels, **kw)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self.forward_net(xs[0]), None

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return self.inverse_net(ys[0]), None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.channels)
        return [tuple(dims[0])]

    _input_dims = _output_dims

    def extra_repr(self) -> str:
        return (
            f"n_images={self.n_images}, image_channels={self.image_channels}, "
            f"width={self.forward_net.width}, {super().extra_repr()}"
        )


register_block(RelationModule)
