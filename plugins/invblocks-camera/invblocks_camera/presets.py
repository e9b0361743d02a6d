"""Invertible Image Signal Processing (Xing, Qian and Chen, CVPR 2021) as an invblocks network.

.. code-block:: text

    RAW (B, 3, H, W): demosaiced, white-balanced, gamma 1/2.2, in [0, 1]
      -> 8 x [invertible 1x1 convolution (LU), affine coupling split 1 | 2]
      -> sRGB (B, 3, H, W) -> the channel (JPEG at quality 90, 4:2:2)

and back: the inverse recovers the RAW from the (decoded) JPEG. Every block works at full
resolution; the coupling is ``y1 = x1 + F(x2)``, ``y2 = x2 exp(0.8 (2 sigmoid(H(y1)) - 1)) +
G(y1)`` with dense-block subnets (five 3x3 convolutions, growth 32).
"""

from __future__ import annotations

import collections.abc as abc
from typing import Any, Literal

import torch
from torch import nn

from invblocks import Sequence
from invblocks import blocks as B
from invblocks.ric import RICNet
from invblocks.ric.channel import build_channel

__all__ = ["JPEG_SETTING", "fit_colour", "invertible_isp"]

JPEG_SETTING: dict[str, Any] = {"type": "jpeg", "quality": 90, "subsampling": "4:2:2"}
"""The paper's channel, a JPEG at quality 90 with the chroma halved horizontally.

The setting of the photos it renders and of the camera renderings it learns from (chroma
subsampling ``"4:2:2"`` in Pillow's and libjpeg's terms)."""


def invertible_isp(
    *,
    blocks: int = 8,
    clamp: float = 0.8,
    start: Literal["identity", "authors"] = "identity",
    channel: str | dict[str, Any] | None = None,
    colour: abc.Sequence[abc.Sequence[float]] | None = None,
    size: tuple[int, int] = (64, 64),
    generator: torch.Generator | None = None,
) -> RICNet:
    """The invertible ISP (see the module) for ``(B, 3, H, W)`` RAW, any ``H`` and ``W``.

    Arguments:
        blocks: The number of [1x1 convolution, coupling] blocks (8 in the paper).
        clamp: The bound of the coupling's log-scale (0.8 in the paper).
        start: ``"identity"``: every 1x1 convolution the identity and every subnet's last
            convolution zero, so the untrained network renders the (gamma-encoded,
            white-balanced) RAW as it is; ``"authors"``: random orthogonal 1x1 convolutions
            and every convolution Xavier-normal with zero bias, the authors' initialisation.
        channel: The channel the rendering crosses (default :data:`JPEG_SETTING`; ``"quantizer"``
            for lossless 8-bit PNGs).
        colour: With ``start="identity"``, an affine colour map ``A`` (3 rows of 4 numbers:
            a 3x3 invertible matrix, then an offset) that the untrained network renders,
            ``A[:, :3] @ raw + A[:, 3]`` at every pixel (:func:`fit_colour` fits one to
            data): the first 1x1 convolution is the matrix and the first coupling's subnets
            add the offset through their last biases.
        size: The input size the network is built for (any size runs).
        generator: Random source for the initialisation.

    With 8 blocks the network has 1,413,760 parameters, as the authors' ``InvISPNet``.
    """
    if start not in ("identity", "authors"):
        raise ValueError(
            f"invertible_isp: start must be 'identity' or 'authors'; received {start!r}"
        )
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= 64:
        raise ValueError(f"invertible_isp: blocks must be an integer in 1..64; received {blocks!r}")
    body = Sequence(3, *size)
    init = "identity" if start == "identity" else "orthogonal"
    for _ in range(blocks):
        body.append(B.InvConv1x1, parameterization="lu", init=init, generator=generator)
        body.append(B.AffineCoupling, split=1, clamp=clamp, generator=generator)
    if start == "authors":
        if colour is not None:
            raise ValueError("invertible_isp: colour is a start of its own; use start='identity'")
        _xavier(body, generator)
    if colour is not None:
        _colour_start(body, colour)
    use = build_channel(JPEG_SETTING if channel is None else channel, body.dims_out[0])
    return RICNet(body, use, image_channels=3)


def _xavier(body: nn.Module, generator: torch.Generator | None) -> None:
    """Every convolution Xavier-normal (gain 1) with zero bias, as the authors' network
    initialises itself after building its blocks."""
    with torch.no_grad():
        for module in body.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                std = (2.0 / (fan_in + fan_out)) ** 0.5
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator, dtype=torch.float64)
                    .mul(std)
                    .to(module.weight.dtype)
                )
                if module.bias is not None:
                    module.bias.zero_()


def _colour_start(body: nn.Module, colour: abc.Sequence[abc.Sequence[float]]) -> None:
    a = torch.as_tensor(colour, dtype=torch.float64)
    if a.shape != (3, 4) or not bool(torch.isfinite(a).all()):
        raise ValueError(
            "invertible_isp: colour must be 3 rows of 4 finite numbers (a 3x3 matrix, then an "
            f"offset); received shape {tuple(a.shape)}"
        )
    conv = next(m for m in body.modules() if isinstance(m, B.InvConv1x1))
    coupling = next(m for m in body.modules() if isinstance(m, B.AffineCoupling))
    try:
        conv.set_matrix(a[:, :3])
    except ValueError:
        raise ValueError("invertible_isp: colour's 3x3 matrix must be invertible") from None
    # y1 = x1 + F(x2), y2 = x2 exp(s) + G(y1): zero weights, the offset in the biases
    for subnet, offset in ((coupling.F, a[:1, 3]), (coupling.G, a[1:, 3])):
        bias = subnet.get_submodule("out").bias if subnet is not None else None
        if not isinstance(bias, torch.Tensor):
            raise ValueError("invertible_isp: colour needs the couplings' dense-block subnets")
        with torch.no_grad():
            bias.copy_(offset.to(bias))


def fit_colour(raw: torch.Tensor, rendering: torch.Tensor) -> list[list[float]]:
    """The affine colour map (3 rows of 4 numbers, :func:`invertible_isp`'s ``colour``) that
    renders ``raw`` ``(B, 3, H, W)`` closest to ``rendering`` ``(B, 3, H, W)`` in least
    squares, pixel by pixel."""
    if raw.shape != rendering.shape or raw.ndim != 4 or raw.shape[1] != 3:
        raise ValueError(
            "fit_colour: expected RAW and rendering of one shape (B, 3, H, W); received "
            f"{tuple(raw.shape)} and {tuple(rendering.shape)}"
        )
    x = raw.double().permute(1, 0, 2, 3).reshape(3, -1).T
    y = rendering.double().permute(1, 0, 2, 3).reshape(3, -1).T
    x = torch.cat((x, torch.ones_like(x[:, :1])), dim=1)
    solution = torch.linalg.lstsq(x, y).solution  # (4, 3)
    return solution.T.tolist()
