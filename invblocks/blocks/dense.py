"""The 5-convolution dense block used as coupling and relation subnet (IICNet / IRN)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._init import conv2d

__all__ = ["DenseBlock"]


class DenseBlock(nn.Module):
    """Five 3x3 convolutions with dense connections and LeakyReLU(0.2).

    ``z1 = lrelu(conv1(u))``, ``z2 = lrelu(conv2([u; z1]))``, ..., ``out = conv5([u; z1..z4])``.
    conv1-4 are Xavier-normal times 0.1 with zero bias; conv5 is all zeros, so the block
    outputs zeros at initialisation (couplings and relation modules start as identities).
    When the block's weights are channels-last, its input is brought to that layout first
    (one small copy instead of one per convolution).

    Arguments:
        c_in: Input channels.
        c_out: Output channels.
        growth: Channels added by each of conv1-4 (``gc``; 32 in IICNet and WIN).
        generator: Random source for the initialisation.

    Shapes:
        ``(B, c_in, H, W) -> (B, c_out, H, W)``

    Example:
        >>> block = DenseBlock(3, 12)
        >>> block(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 12, 8, 8])
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        growth: int = 32,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.c_in, self.c_out, self.growth = c_in, c_out, growth
        self.convs = nn.ModuleList(
            conv2d(c_in + i * growth, growth, 3, init="xavier", scale=0.1, generator=generator)
            for i in range(4)
        )
        self.out = conv2d(c_in + 4 * growth, c_out, 3, init="zeros")
        self.act = nn.LeakyReLU(0.2)

    def forward(self, u: Tensor) -> Tensor:
        if self.out.weight.is_contiguous(memory_format=torch.channels_last):
            # channels-last weights (``module.to(memory_format=torch.channels_last)``): give
            # the concatenations the same layout, or every convolution copies its input
            u = u.contiguous(memory_format=torch.channels_last)
        feats = [u]
        for conv in self.convs:
            feats.append(self.act(conv(torch.cat(feats, dim=1))))
        return self.out(torch.cat(feats, dim=1))

    def extra_repr(self) -> str:
        return f"{self.c_in} -> {self.c_out}, growth={self.growth}"
