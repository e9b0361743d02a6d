"""The invertible blocks of IICNet and WIN, one module per family.

The channels (the quantiser, the JPEG channel) are in :mod:`invblocks.ric`.
"""

from .. import _deprecated
from .conv1x1 import InvConv1x1
from .coupling import AffineCoupling
from .dense import DenseBlock, run_in_dtype, set_compact_dense, set_subnet_dtype
from .haar import HaarDownscale, Squeeze, Unsqueeze
from .prior import ReferencePrior, UpscalePrior, reference_prediction, upscale_detail
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
    "ReferencePrior",
    "RelationBlock",
    "RelationModule",
    "ResidueHiding",
    "Split",
    "Squeeze",
    "Unsqueeze",
    "UpscalePrior",
    "hides_in_residue",
    "reference_prediction",
    "run_in_dtype",
    "secret_phases",
    "set_compact_dense",
    "set_subnet_dtype",
    "shift",
    "shift_offsets",
    "upscale_detail",
]

__getattr__ = _deprecated.getattr_for(__name__)  # Quantizer, JPEGChannel (removed in 0.3)
