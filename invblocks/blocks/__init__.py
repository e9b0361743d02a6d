"""The invertible blocks of IICNet and WIN, one module per family."""

from .conv1x1 import InvConv1x1
from .coupling import AffineCoupling
from .dense import DenseBlock, set_compact_dense
from .haar import HaarDownscale, Squeeze, Unsqueeze
from .jpeg import JPEGChannel, jpeg
from .prior import ReferencePrior, UpscalePrior, reference_prediction, upscale_detail
from .quantize import Quantizer, quantize
from .relation import RelationBlock, RelationModule
from .residue import ResidueHiding, hides_in_residue, secret_phases
from .split import Concat, Split
from .squeeze import ChannelSqueeze
from .wic import WIC, shift, shift_offsets

__all__ = [
    "WIC",
    "AffineCoupling",
    "ChannelSqueeze",
    "Concat",
    "DenseBlock",
    "HaarDownscale",
    "InvConv1x1",
    "JPEGChannel",
    "Quantizer",
    "ReferencePrior",
    "RelationBlock",
    "RelationModule",
    "ResidueHiding",
    "Split",
    "Squeeze",
    "Unsqueeze",
    "UpscalePrior",
    "hides_in_residue",
    "jpeg",
    "quantize",
    "reference_prediction",
    "secret_phases",
    "set_compact_dense",
    "shift",
    "shift_offsets",
    "upscale_detail",
]
