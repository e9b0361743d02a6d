"""Ready-made networks of the reference methods, built from invblocks' blocks."""

from __future__ import annotations

from typing import Literal

import torch

from . import blocks as B
from .graph import Sequence

__all__ = ["iicnet"]


def iicnet(
    n_images: int,
    blocks: int = 10,
    downscale: Literal["haar", "squeeze"] | None = None,
    out_channels: int = 3,
    *,
    image_channels: int = 3,
    size: tuple[int, int] = (144, 144),
    relation: bool = True,
    order: Literal["ref", "hl"] = "ref",
    conv1x1: Literal["plain", "lu"] = "plain",
    width: int = 64,
    clamp: float = 1.0,
    quantizer: Literal["noise", "ste", "round"] = "noise",
    generator: torch.Generator | None = None,
) -> Sequence:
    """IICNet: relation -> [downscale + 1x1 conv] -> couplings -> channel squeeze -> quantizer.

    The channel bookkeeping follows the reference: ``C = image_channels * n_images`` input
    channels, ``4C`` after a downscale; the couplings' first half (the reference image's slot,
    which is never permuted) has ``out_channels`` channels without downscale, ``4 *
    out_channels`` with ``order="ref"``, and ``C`` with ``order="hl"``. The channel squeeze
    averages groups of ``out_channels``.

    Arguments:
        n_images: Images stacked on the channel axis (the reference image first).
        blocks: Number of affine couplings (10 for st-01, 16 for grayscale and rescaling).
        downscale: ``None`` (same-size embedding), ``"haar"`` or ``"squeeze"`` (x2 smaller).
        out_channels: Channels of the embedding (3 for RGB, 1 for grayscale).
        image_channels: Channels of each input image.
        size: ``(H, W)`` used for shape inference; the network runs on any size the blocks
            accept (even sides with a downscale).
        relation: Include the relation module (and its learned inverse).
        order: Channel order after the downscale (``"ref"`` or ``"hl"``).
        conv1x1: Parameterisation of the 1x1 convolution after the downscale (IICNet: plain).
        width: Hidden width of the relation module.
        clamp: Coupling clamp.
        quantizer: Training behaviour of the final quantizer.
        generator: Random source for every initialisation.

    Returns:
        A :class:`~invblocks.Sequence` mapping ``(B, image_channels*n_images, H, W)`` to the
        embedding ``(B, out_channels, H', W')``.

    Example:
        >>> net = iicnet(5)  # the st-01 network
        >>> sum(p.numel() for p in net.parameters())
        6805540
    """
    if n_images < 1 or blocks < 0:
        raise ValueError(
            f"iicnet: need n_images >= 1 and blocks >= 0; received {n_images}, {blocks}"
        )
    if downscale not in (None, "haar", "squeeze"):
        raise ValueError(
            f"iicnet: downscale must be None, 'haar' or 'squeeze'; received {downscale!r}"
        )
    channels = image_channels * n_images
    net = Sequence(channels, *size)
    if relation:
        net.append(
            B.RelationModule,
            n_images=n_images,
            image_channels=image_channels,
            width=width,
            generator=generator,
        )
    split = out_channels
    if downscale is not None:
        down = B.HaarDownscale if downscale == "haar" else B.Squeeze
        net.append(down, order=order, group=image_channels)
        net.append(B.InvConv1x1, parameterization=conv1x1, generator=generator)
        split = 4 * out_channels if order == "ref" else channels
    for _ in range(blocks):
        net.append(B.AffineCoupling, split=split, clamp=clamp, generator=generator)
    net.append(B.ChannelSqueeze, out_channels=out_channels)
    net.append(B.Quantizer, train_mode=quantizer, generator=None)
    return net
