"""invblocks-compress: learned image compression with an invertible encoder (Enhanced
Invertible Encoding, ACM MM 2021) as an invblocks plugin: blocks, an entropy-coded channel
that writes real bitstreams, the ``invcompress`` preset and the ``compression`` task."""

from .blocks import AttentionBlock, AttentionPair, Bottleneck, TwoSidedCoupling
from .channel import CONTEXTS, EntropyCoded, MaskedConv2d
from .entropy import SCALES, FactorizedDensity, gaussian_likelihood
from .presets import (
    LAMBDAS,
    QUALITIES,
    STEPS,
    dct_keep,
    dct_start,
    haar_start,
    invcompress,
    latent_channels,
)

__all__ = [
    "CONTEXTS",
    "LAMBDAS",
    "QUALITIES",
    "SCALES",
    "STEPS",
    "AttentionBlock",
    "AttentionPair",
    "Bottleneck",
    "EntropyCoded",
    "FactorizedDensity",
    "MaskedConv2d",
    "TwoSidedCoupling",
    "dct_keep",
    "dct_start",
    "gaussian_likelihood",
    "haar_start",
    "invcompress",
    "latent_channels",
]
