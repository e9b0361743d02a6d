"""Ready-made networks of the reference methods, built from invblocks' blocks.

Every preset is registered by name in :data:`PRESETS` (a plugin adds its own with
``registry.add_preset(fn)``); each returns a :class:`~invblocks.ric.network.RICNet` whose channel is
the 8-bit quantiser unless ``channel`` names another (a name, a table of arguments, or a
:class:`~invblocks.ric.channel.Channel`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from . import _deprecated
from . import blocks as B
from ._text import short
from .graph import Graph
from .registry import NamedRegistry
from .ric.channel import Channel, build_channel
from .ric.network import RICNet
from .ric.quantizer import TrainMode
from .sequence import Sequence

__all__ = ["PRESETS", "iicnet", "register_preset", "wicm", "win", "win_naive"]

ChannelSpec = Channel | str | Mapping[str, Any] | None

PRESETS: NamedRegistry[Callable[..., Any]] = NamedRegistry("preset")
"""Network presets by name (``"iicnet"``, ``"win"``, ``"win_naive"``, ``"wicm"``, a
plugin's)."""


def register_preset(
    fn: Callable[..., Any], name: str | None = None, *, owner: str = "invblocks"
) -> Callable[..., Any]:
    """Register the network function ``fn`` under ``name`` (default: its ``__name__``)."""
    return PRESETS.register(fn, name or fn.__name__, owner=owner)


_LIMITS = {"blocks": 512, "width": 4096, "growth": 4096, "n": 1 << 16, "modules": 64, "levels": 8}
"""The largest value of each size setting a preset builds: far beyond any published network
(st-01 has 10 blocks of growth 32), and small enough that a typo (``blocks=1000000000``) is
refused at once instead of building until memory runs out."""


def _check_sizes(where: str, **sizes: int) -> None:
    """``ValueError`` naming the setting unless each size is an integer in its range."""
    for name, value in sizes.items():
        limit = _LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(
                f"{where}: {name} must be an integer in 0..{limit}; received {short(value)}"
            )


def _channel(
    channel: ChannelSpec, quantizer: TrainMode | None, default: TrainMode, dims: Any, where: str
) -> Channel:
    """The preset's channel: ``channel`` built for the embedding ``dims``, or the 8-bit
    quantiser training as ``default`` (or as the deprecated ``quantizer`` says)."""
    if quantizer is not None:
        if channel is not None:
            raise ValueError(f"{where}: give channel or quantizer, not both")
        spec = _deprecated.quantizer_channel(quantizer, f"presets.{where}", stacklevel=5)
        return build_channel(spec or {}, dims)
    if channel is None:
        channel = {"type": "quantizer", "train_mode": default}
    return build_channel(channel, dims)


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
    growth: int = 32,
    clamp: float = 1.0,
    channel: ChannelSpec = None,
    quantizer: TrainMode | None = None,
    init: Literal["reference", "trivial"] = "reference",
    levels: int = 1,
    prior: int | None = None,
    upscale_prior: bool | None = None,
    hiding_levels: int | None = None,
    hiding_difference: float | None = None,
    generator: torch.Generator | None = None,
) -> RICNet:
    """IICNet: relation -> [downscale + 1x1 conv] -> couplings -> channel squeeze, then the
    quantiser as the channel; optionally a classical start: a fixed reference or upscale
    prior first, or a residue hiding in place of the relation module (after the downscale).

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
        growth: Growth of every dense block (32 in IICNet; smaller is faster).
        clamp: Coupling clamp.
        channel: The channel (default: the 8-bit quantiser with IICNet's uniform noise in
            training, ``{"type": "quantizer", "train_mode": "noise"}``).
        quantizer: Deprecated: ``channel={"type": "quantizer", "train_mode": ...}``.
        init: ``"reference"`` (IICNet's: a random orthogonal 1x1 convolution after the
            downscale, the channel squeeze averaging its groups) or ``"trivial"``: the
            untrained network embeds the reference slot's image (its Haar low band after a
            downscale, its BT.601 luma for gray) and restores it in every slot (zeros in the
            high bands): it starts at the trivial solution, so training only improves on it.
            The 1x1 convolution starts at the identity (a YCbCr mix for gray), and the
            channel squeeze keeps its first group (``mode="first"``).
        levels: Downscaling levels (``2``: x4), each a Haar or squeeze step.
        prior: ``None`` (IICNet), or the zoom of a
            :class:`~invblocks.blocks.prior.ReferencePrior` put first: the other slots enter
            the network as their difference from the reference slot (``1``) or from its
            centre zoomed ``prior`` times (dual-view). With ``init="trivial"`` the untrained
            network then restores that prediction, the task's trivial baseline.
        upscale_prior: Put an :class:`~invblocks.blocks.prior.UpscalePrior` first, so that
            an untrained network restores the bicubic upscaling of its low band rather than
            each low-band pixel repeated (``None``: with ``init="trivial"`` and a Haar
            downscale; needs a downscale).
        hiding_levels: Hide the other slots in the residue of the reference slot's 8-bit
            image: a :class:`~invblocks.blocks.residue.ResidueHiding` with these levels comes
            first (after the upscale prior and the Haar level when downscaling), without the
            relation module (and not with ``prior``), and the couplings
            keep the embedding slot (``keep_first``): they learn to predict, from the
            embedding, what the channel squeeze drops (the cover's fine part, secret pixels
            another secret carries). The embedding is fixed by the hiding, within
            ``hiding_levels / 2`` grid steps of the reference, and the restoration starts
            at the other slots to ``hiding_levels`` values (``2 * ((hiding_levels - 1) //
            2) + 1`` with ``hiding_difference``; two on a checkerboard, three
            and four sampled in turn over ``2 x 2`` cells). Needs ``init="trivial"`` and an
            embedding of the slots' channels: the same size, or one Haar level with
            ``order="hl"``, where the low bands are hidden (no 1x1 convolution after the
            downscale) and the couplings also predict the high bands.
        hiding_difference: With ``hiding_levels``, hide each other slot's difference from the
            reference slot, companded with this scale (the ``difference`` of
            :class:`~invblocks.blocks.residue.ResidueHiding`): for slots that resemble the
            reference, as the frames of a clip.
        generator: Random source for every initialisation.

    Returns:
        A :class:`~invblocks.ric.network.RICNet` whose body (a
        :class:`~invblocks.sequence.Sequence`) maps ``(B, image_channels*n_images, H, W)``
        to the embedding ``(B, out_channels, H', W')`` and whose channel is the 8-bit
        :class:`~invblocks.ric.quantizer.Quantizer` (or ``channel``).

    References:
        Cheng et al., "IICNet: A Generic Framework for Reversible Image Conversion", ICCV 2021.

    Example:
        >>> net = iicnet(5)  # the st-01 network
        >>> sum(p.numel() for p in net.parameters())
        6805540
    """
    _check_sizes("iicnet", blocks=blocks, width=width, growth=growth, levels=levels)
    if n_images < 1:
        raise ValueError(f"iicnet: need n_images >= 1; received {n_images}")
    if downscale not in (None, "haar", "squeeze"):
        raise ValueError(
            f"iicnet: downscale must be None, 'haar' or 'squeeze'; received {downscale!r}"
        )
    channels = image_channels * n_images
    net = Sequence(channels, *size)
    if hiding_levels is not None and (
        prior is not None
        or downscale not in (None, "haar")
        or (downscale is not None and (order != "hl" or levels != 1))
        or out_channels != image_channels
        or init != "trivial"
    ):
        raise ValueError(
            "iicnet: hiding_levels needs init='trivial', an embedding of the slots' channels "
            "(the same size, or one Haar level with order='hl') and no prior; received "
            f"init={init!r}, prior={prior}, downscale={downscale!r}, order={order!r}, "
            f"levels={levels}, out_channels={out_channels} (hiding_levels=None leaves the "
            "hiding out)"
        )
    if hiding_difference is not None and hiding_levels is None:
        raise ValueError(
            "iicnet: hiding_difference needs hiding_levels (set both, or hiding_difference=None "
            "with hiding_levels=None)"
        )
    if upscale_prior is None:
        upscale_prior = init == "trivial" and downscale == "haar"
    if upscale_prior:
        if downscale is None:
            raise ValueError("iicnet: upscale_prior needs a downscale")
        net.append(B.UpscalePrior, factor=2**levels)
    if prior is not None:
        net.append(B.ReferencePrior, channels=image_channels, zoom=prior)
    if relation and hiding_levels is None:
        net.append(
            B.RelationModule,
            n_images=n_images,
            image_channels=image_channels,
            width=width,
            growth=growth,
            generator=generator,
        )
    if init not in ("reference", "trivial"):
        raise ValueError(f"iicnet: init must be 'reference' or 'trivial'; received {init!r}")
    if levels < 1 or (downscale is None and levels != 1):
        raise ValueError(f"iicnet: levels must be 1, or more with a downscale; received {levels}")
    trivial = init == "trivial"
    squeeze: dict[str, Any] = {}
    if trivial:
        fill = _trivial_fill(n_images, image_channels, out_channels, downscale, order, levels)
        if prior is not None or hiding_levels is not None:  # the other slots: zeros
            fill = [0]
        squeeze = {"mode": "first", "fill": fill}
        if out_channels != image_channels:  # gray from colour: each image's luma comes first
            net.append(B.InvConv1x1, parameterization=conv1x1, init="luma")
    split = out_channels
    if downscale is not None:
        down = B.HaarDownscale if downscale == "haar" else B.Squeeze
        for _ in range(levels):
            net.append(down, order=order, group=image_channels)
        factor = 4**levels
        split = factor * out_channels if order == "ref" else channels * factor // 4
        if hiding_levels is None:  # a learnt mix before the hiding would move its embedding
            init_conv = "identity" if trivial else "orthogonal"
            net.append(B.InvConv1x1, parameterization=conv1x1, init=init_conv, generator=generator)
    if hiding_levels is not None:  # the couplings predict, from the embedding, what it drops
        net.append(
            B.ResidueHiding,
            channels=image_channels,
            levels=hiding_levels,
            secrets=None if downscale is None else n_images - 1,
            difference=hiding_difference,
            checkerboard=True,
        )
        split = out_channels
    for _ in range(blocks):
        net.append(
            B.AffineCoupling,
            split=split,
            clamp=clamp,
            growth=growth,
            keep_first=hiding_levels is not None,
            generator=generator,
        )
    net.append(B.ChannelSqueeze, out_channels=out_channels, **squeeze)
    use = _channel(channel, quantizer, "noise", net.dims_out[0], "iicnet")
    return RICNet(net, use, image_channels=image_channels)


def _trivial_fill(
    n: int, image_channels: int, out_channels: int, downscale: str | None, order: str, levels: int
) -> list[int] | None:
    """The groups of ``out_channels`` that hold each image (or its low band) when every block
    before the channel squeeze is the identity: the inverse fills them with the embedding."""
    if out_channels == image_channels:
        if downscale is None:
            return None  # every group is an image: tile
        if downscale != "haar":
            raise ValueError("iicnet: init='trivial' with a downscale needs downscale='haar'")
        return [i * 4**levels for i in range(n)] if order == "ref" else list(range(n))
    if out_channels == 1 and image_channels == 3 and downscale is None:
        return [3 * i for i in range(n)]  # each image's luma after the YCbCr mix
    raise ValueError(
        f"iicnet: init='trivial' makes a {out_channels}-channel embedding of "
        f"{image_channels}-channel images only without a downscale and for gray"
    )


def _wicm_sizes(n: int, ratio: float) -> tuple[int, int]:
    short = int(n * ratio)
    return short, n - short


def wicm(
    n: int = 32,
    modules: int = 2,
    blocks: int = 4,
    ratio: float = 0.75,
    *,
    size: tuple[int, int] = (32, 32),
    clamp: float = 1.0,
    generator: torch.Generator | None = None,
) -> Graph:
    """WIN's WIC module with long-term memory (``WICM``) as a :class:`~invblocks.graph.Graph`.

    With ``SM = int(n * ratio)`` short-term and ``LM = n - SM`` long-term channels, module
    ``i`` expands its ``SM``-channel input with ``WIC(SM -> n)``, parks the first ``LM``
    channels in long-term memory and runs ``blocks`` couplings (split ``SM // 2``) on the
    other ``SM``; a tail coupling runs over ``[m_1; ...; m_M; y]``. Node names: ``wic{i}``,
    ``memory{i}``, ``flows{i}`` (a :class:`~invblocks.sequence.Sequence`), ``merge``, ``tail``.

    The expansions are ``LEFT`` (injective), so the graph's inverse is exact on its outputs:
    ``inverse(forward(x)) == x`` to float precision.

    Shapes:
        ``(B, SM, H, W) -> (B, SM + modules * LM, H, W)``
    """
    short, long = _wicm_sizes(n, ratio)
    h, w = size
    graph = Graph({"x": (short, h, w)})
    y = "x"
    for i in range(1, modules + 1):
        graph.add(f"wic{i}", B.WIC, y, out_channels=n, generator=generator)
        graph.add(f"memory{i}", B.Split, f"wic{i}", sections=[long, short])
        flows = Sequence(short, h, w)
        for _ in range(blocks):
            flows.append(B.AffineCoupling, split=short // 2, clamp=clamp, generator=generator)
        y = graph.add(f"flows{i}", flows, f"memory{i}:1")
    total = short + modules * long
    graph.add("merge", B.Concat, [f"memory{i}:0" for i in range(1, modules + 1)] + [y])
    graph.add("tail", B.AffineCoupling, "merge", split=total // 2, clamp=clamp, generator=generator)
    return graph.output("tail")


def win(
    in_channels: int,
    out_channels: int,
    *,
    scale: int = 1,
    n: int = 32,
    modules: int = 2,
    blocks: int = 4,
    ratio: float = 0.75,
    size: tuple[int, int] = (64, 64),
    clamp: float = 1.0,
    image_channels: int | None = None,
    channel: ChannelSpec = None,
    quantizer: TrainMode | None = None,
    generator: torch.Generator | None = None,
) -> RICNet:
    """WIN: pixel unshuffle -> WIC -> WICM -> (pixel shuffle) -> fusion WIC, then the
    quantiser as the channel.

    ``scale=1`` (hiding, decolourisation): ``Squeeze`` (``C -> 4C``, PixelUnshuffle order),
    ``WIC(4C -> SM)``, :func:`wicm`, ``Unsqueeze`` (PixelShuffle), fusion ``WIC(c -> C_out)``.
    ``scale = 2**k`` (rescaling): ``k`` stages of ``Squeeze``, ``WIC(4c -> SM)``, WICM, each
    growing ``n`` to the next power of two above ``4c`` when ``4c > n``; then the fusion WIC.
    The fusion WIC is the only dimension-reducing layer (``AUGMENTED`` when
    ``C_out < c``); everything before it inverts exactly.

    Reference set-ups (defaults ``n=32, modules=2, blocks=4, ratio=0.75``):
    hiding ``k`` secrets ``win(3 * (k + 1), 3)`` (2,342,724 parameters for one secret);
    decolourisation ``win(3, 1)`` (2,342,416); rescaling x2 ``win(3, 3, scale=2)``
    (2,343,996); x4 with four LR copies ``win(3, 12, scale=4)`` (13,170,444). For two or more
    secrets ``4C > SM`` and ``n`` grows by the same rule at ``scale=1`` (the reference's
    multi-secret configurations are not published, so those counts are ours).

    The channel is the 8-bit :class:`~invblocks.ric.quantizer.Quantizer` training without
    quantisation (WIN's default, ``train_mode="identity"``; ``"ste"`` is its
    ``quantization=True``) unless ``channel`` says otherwise (``quantizer``: deprecated, the
    quantiser's training mode).
    ``image_channels``: channels of each input image (default: 3 when ``in_channels`` is a
    multiple of 3, else ``in_channels``: one image of them all, e.g. a packed RAW).

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, H / scale, W / scale)``

    References:
        Huang and Huang, "WIN: Variable-Length Reversible Image Conversion with a
        Well-Posed Invertible Network", arXiv 2508.02111.
    """
    _check_sizes("win", n=n, modules=modules, blocks=blocks)
    if scale < 1 or scale & (scale - 1):
        raise ValueError(f"win: scale must be a power of two; received {scale}")
    h, w = size
    net = Sequence(in_channels, h, w)
    c = in_channels
    for _ in range(max(1, scale.bit_length() - 1)):
        net.append(B.Squeeze, order="channel")
        c *= 4
        if c > n:
            n = 2 ** math.ceil(math.log2(c))
        while _wicm_sizes(n, ratio)[0] < c:  # keep the WIC before the WICM well-posed
            n *= 2
        short, long = _wicm_sizes(n, ratio)
        net.append(B.WIC, out_channels=short, generator=generator)
        _, h2, w2 = net.dims_out[0]
        net.append(wicm(n, modules, blocks, ratio, size=(h2, w2), clamp=clamp, generator=generator))
        c = short + modules * long
    if scale == 1:
        if c % 4:
            raise ValueError(f"win: {c} channels before the pixel shuffle are not divisible by 4")
        net.append(B.Unsqueeze, order="channel")
        c //= 4
    net.append(B.WIC, out_channels=out_channels, generator=generator)
    use = _channel(channel, quantizer, "identity", net.dims_out[0], "win")
    return RICNet(net, use, image_channels=_image_channels(in_channels, image_channels))


def win_naive(
    in_channels: int,
    out_channels: int,
    *,
    scale: int = 1,
    blocks: int = 8,
    size: tuple[int, int] = (64, 64),
    clamp: float = 1.0,
    image_channels: int | None = None,
    channel: ChannelSpec = None,
    quantizer: TrainMode | None = None,
    generator: torch.Generator | None = None,
) -> RICNet:
    """WIN-Naive: pixel unshuffle -> couplings -> (pixel shuffle) -> fusion WIC, then the
    channel (``channel``, ``quantizer`` and ``image_channels`` as in :func:`win`).

    ``scale=1``: ``Squeeze`` (``C -> 4C``), ``blocks`` couplings (split ``2C``),
    ``Unsqueeze``, ``WIC(C -> C_out)``. ``scale = 2**k``: ``k`` squeezes (``C s^2``
    channels), couplings (split half), ``WIC(C s^2 -> C_out)``. Hiding one secret
    ``win_naive(6, 3)`` has 2,025,156 parameters, rescaling x2 ``win_naive(3, 3, scale=2)``
    1,670,016, as in the reference.
    """
    _check_sizes("win_naive", blocks=blocks)
    if scale < 1 or scale & (scale - 1):
        raise ValueError(f"win_naive: scale must be a power of two; received {scale}")
    net = Sequence(in_channels, *size)
    for _ in range(max(1, scale.bit_length() - 1)):
        net.append(B.Squeeze, order="channel")
    c = net.dims_out[0][0]
    for _ in range(blocks):
        net.append(B.AffineCoupling, split=c // 2, clamp=clamp, generator=generator)
    if scale == 1:
        net.append(B.Unsqueeze, order="channel")
    net.append(B.WIC, out_channels=out_channels, generator=generator)
    use = _channel(channel, quantizer, "identity", net.dims_out[0], "win_naive")
    return RICNet(net, use, image_channels=_image_channels(in_channels, image_channels))


def _image_channels(in_channels: int, given: int | None) -> int:
    """The channels of each input image: ``given``, else 3 for a multiple of 3, else all."""
    if given is not None:
        return given
    return 3 if in_channels % 3 == 0 else in_channels


for _preset in (iicnet, wicm, win, win_naive):
    register_preset(_preset)
