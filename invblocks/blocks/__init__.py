"""The invertible blocks of IICNet and WIN, one module per family."""

from .conv1x1 import InvConv1x1
from .coupling import AffineCoupling
from .dense import DenseBlock
from .haar import HaarDownscale, Squeeze
from .quantize import Quantizer, quantize
from .relation import RelationBlock, RelationModule
from .squeeze import ChannelSqueeze

__all__ = [
    "AffineCoupling",
    "ChannelSqueeze",
    "DenseBlock",
    "HaarDownscale",
    "InvConv1x1",
    "Quantizer",
    "RelationBlock",
    "RelationModule",
    "Squeeze",
    "quantize",
]
