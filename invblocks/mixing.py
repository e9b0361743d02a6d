"""The channel product of the invertible linear blocks, in full float32 on every device."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["channel_mix"]


def channel_mix(x: Tensor, m: Tensor) -> Tensor:
    """Mix channels by a matrix at every pixel: ``(B, C, H, W), (O, C) -> (B, O, H, W)``.

    The product of the invertible linear blocks (1x1 convolutions, WIC), whose inverse must
    undo it to float precision. On the CPU it is a 1x1 convolution (oneDNN); elsewhere it is
    a matrix product, because PyTorch lets cuDNN run float32 convolutions in TF32 by default
    (``torch.backends.cudnn.allow_tf32``), 10 mantissa bits that put a ~1e-3 error into
    every round trip, while float32 matrix products stay full float32 unless asked otherwise
    (``torch.set_float32_matmul_precision``). ``m`` is cast to ``x``'s dtype.

    Example:
        >>> x = torch.rand(2, 3, 4, 5)
        >>> channel_mix(x, torch.eye(3)).equal(x)
        True
    """
    m = m.to(x.dtype)
    if x.device.type == "cpu":
        return F.conv2d(x, m[:, :, None, None])
    b, _, h, w = x.shape
    return (m @ x.reshape(b, x.shape[1], h * w)).reshape(b, m.shape[0], h, w)
