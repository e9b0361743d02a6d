"""A simple camera pipeline and its inverse.

Rendering (RAW -> sRGB): white balance, colour matrix (camera RGB -> linear sRGB), a global
tone curve (smoothstep), sRGB gamma. Unprocessing (sRGB -> RAW) inverts each step in reverse
order and mosaics the result into an RGGB Bayer pattern, packed as 4 channels at half
resolution. RAW made this way from real photographs stands in for real sensor data.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

__all__ = [
    "CameraParams",
    "pack_bayer",
    "render",
    "render_rgb",
    "unpack_bayer",
    "unprocess",
    "unprocess_rgb",
]


@attrs.frozen
class CameraParams:
    """White-balance gains and the camera-to-sRGB colour matrix (rows sum to 1)."""

    red_gain: float = 2.0
    blue_gain: float = 1.6
    ccm: tuple[tuple[float, ...], ...] = (
        (1.65, -0.45, -0.20),
        (-0.25, 1.45, -0.20),
        (0.02, -0.52, 1.50),
    )

    def matrix(self, like: Tensor) -> Tensor:
        return like.new_tensor(self.ccm)


def _srgb_to_linear(x: Tensor) -> Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: Tensor) -> Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def _tone(x: Tensor) -> Tensor:
    x = x.clamp(0, 1)
    return 3 * x**2 - 2 * x**3


def _untone(y: Tensor) -> Tensor:
    y = y.clamp(0, 1)
    return 0.5 - torch.sin(torch.asin(1 - 2 * y) / 3)


def _mix(x: Tensor, m: Tensor) -> Tensor:
    return torch.einsum("ij,bjhw->bihw", m, x)


def pack_bayer(rgb: Tensor) -> Tensor:
    """Mosaic ``(B, 3, H, W)`` camera RGB into RGGB, packed ``(B, 4, H/2, W/2)``: R, G1, G2, B."""
    return torch.stack(
        (
            rgb[:, 0, 0::2, 0::2],
            rgb[:, 1, 0::2, 1::2],
            rgb[:, 1, 1::2, 0::2],
            rgb[:, 2, 1::2, 1::2],
        ),
        dim=1,
    )


def unpack_bayer(raw: Tensor) -> Tensor:
    """Half-resolution camera RGB from packed RGGB: ``(B, 4, h, w) -> (B, 3, h, w)``
    (R, mean of the greens, B): no demosaicing, one RGB pixel per Bayer cell."""
    return torch.stack((raw[:, 0], (raw[:, 1] + raw[:, 2]) / 2, raw[:, 3]), dim=1)


def unprocess_rgb(srgb: Tensor, params: CameraParams = CameraParams()) -> Tensor:
    """sRGB ``(B, 3, H, W)`` in [0, 1] -> linear camera RGB ``(B, 3, H, W)`` in [0, 1], before
    white balance and before the mosaic (what a demosaiced sensor reading would be)."""
    lin = _untone(_srgb_to_linear(srgb))
    cam = _mix(lin, torch.linalg.inv(params.matrix(lin)))
    gains = cam.new_tensor([params.red_gain, 1.0, params.blue_gain]).view(1, 3, 1, 1)
    return (cam / gains).clamp(0, 1)


def render_rgb(cam: Tensor, params: CameraParams = CameraParams()) -> Tensor:
    """Linear camera RGB ``(B, 3, H, W)`` -> the sRGB photo the pipeline renders from it."""
    gains = cam.new_tensor([params.red_gain, 1.0, params.blue_gain]).view(1, 3, 1, 1)
    lin = _mix(cam * gains, params.matrix(cam))
    return _linear_to_srgb(_tone(lin))


def unprocess(srgb: Tensor, params: CameraParams = CameraParams()) -> Tensor:
    """sRGB ``(B, 3, H, W)`` in [0, 1] -> packed RAW ``(B, 4, H/2, W/2)`` in [0, 1]."""
    return pack_bayer(unprocess_rgb(srgb, params))


def render(raw: Tensor, params: CameraParams = CameraParams()) -> Tensor:
    """Packed RAW ``(B, 4, h, w)`` -> the sRGB photo ``(B, 3, h, w)`` the pipeline renders."""
    cam = unpack_bayer(raw)
    gains = cam.new_tensor([params.red_gain, 1.0, params.blue_gain]).view(1, 3, 1, 1)
    lin = _mix(cam * gains, params.matrix(cam))
    return _linear_to_srgb(_tone(lin))
