"""The authors' InvCompress checkpoints (Enhanced Invertible Encoding, ACM MM 2021) as
invblocks networks: ``invblocks import-weights invcompress FILE -o DIR``.

The authors' code (``xyq7/InvCompress``, built on CompressAI) saves the state dict of
``InvCompress(N)``: bare where ``update_model`` writes it
(``checkpoint_best_loss-<hash>.pth.tar``, its CDF tables filled), or under ``"state_dict"``
beside the optimisers where training writes it (``checkpoint_best_loss.pth.tar``). Either is
read with :func:`invblocks.published.read_state_dict` (never unpickled as code). ``N`` comes
from ``h_a.0.weight``, as the authors' ``from_state_dict`` takes it; the network is
:func:`~invblocks_compress.presets.invcompress` with ``n=N``, ``start="random"`` and the
serial context, and every tensor is renamed by :data:`INVCOMPRESS_KEYS`.

Their entropy coders' tables (``_quantized_cdf``, ``_offset``, ``_cdf_length``,
``scale_table``) and constant buffers are not taken: the channel keeps its own, and builds
the hyper-latent's coding tables from the file's ``quantiles`` (their medians centre the
rounding of ``z`` as in the authors' coder). The context model's mask must be the type-A mask
the serial context uses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from invblocks.published import ImportedModel

from .channel import EntropyCoded, _mask
from .presets import invcompress

__all__ = ["INVCOMPRESS_KEYS", "NOT_NEEDED", "authors_shapes", "convert_invcompress"]

INVCOMPRESS_KEYS: list[tuple[str, str | None]] = [
    *[
        (f"enh.{theirs}.layers.{a}", f"body.nodes.0.{ours}.{b}")
        for theirs, ours in (("forw_enh", "forward_net"), ("back_enh", "inverse_net"))
        for a, b in (
            ("0.conv{k}.{p}", "headers.0.0.{dense}.{p}"),
            ("1.{p}", "headers.0.1.{p}"),
            ("2.{p}", "tailers.0.0.{p}"),
            ("3.{p}", "tailers.0.1.{p}"),
            ("4.conv{k}.{p}", "tailers.0.2.{dense}.{p}"),
        )
    ],
    ("inv.operations.{o}.weight", "body.nodes.{node}.weight"),
    ("inv.operations.{o}.{f}.conv{c}.{p}", "body.nodes.{node}.{f}.conv{c}.{p}"),
    ("attention.forw_att.{rest}", "body.nodes.22.forward_net.{rest}"),
    ("attention.back_att.{rest}", "body.nodes.22.inverse_net.{rest}"),
    ("h_a.{rest}", "channel.h_a.{rest}"),
    ("h_s.{rest}", "channel.h_s.{rest}"),
    ("entropy_parameters.{rest}", "channel.entropy_parameters.{rest}"),
    ("context_prediction.mask", None),
    ("context_prediction.{p}", "channel.context_prediction.{p}"),
    ("entropy_bottleneck._matrix{i}", "channel.density.matrices.{i}"),
    ("entropy_bottleneck._bias{i}", "channel.density.biases.{i}"),
    ("entropy_bottleneck._factor{i}", "channel.density.factors.{i}"),
    ("entropy_bottleneck.quantiles", "channel.density.quantiles"),
]
"""The authors' state-dict names (``InvCompress``: ``enh``, ``inv``, ``attention`` and
Cheng2020Anchor's entropy model) and invblocks' names for them (``None``: checked, not kept).
``{k}``: a dense-block convolution 1-5 (ours: ``convs.0`` to ``convs.3``, then ``out``:
``{dense}``); ``{o}``: an operation of the invertible encoding (ours: node ``{node}`` =
``{o}`` + 1, after the enhancement); ``{f}``: a coupling's subnet ``G1``, ``G2``, ``H1``,
``H2``; ``{c}``: its convolution 1-3; ``{i}``: a number; ``{p}``: ``weight`` or ``bias``;
``{rest}``: the same path on both sides."""

NOT_NEEDED = (
    "entropy_bottleneck._offset",
    "entropy_bottleneck._quantized_cdf",
    "entropy_bottleneck._cdf_length",
    "entropy_bottleneck.target",
    "entropy_bottleneck.likelihood_lower_bound.bound",
    "gaussian_conditional._offset",
    "gaussian_conditional._quantized_cdf",
    "gaussian_conditional._cdf_length",
    "gaussian_conditional.scale_table",
    "gaussian_conditional.scale_bound",
    "gaussian_conditional.likelihood_lower_bound.bound",
    "gaussian_conditional.lower_bound_scale.bound",
)
"""Buffers of the authors' that are not taken, their coder's tables and constants; read if
there, of any shape, and left out."""

_FIELDS = {
    "k": r"([1-5])",
    "o": r"(\d+)",
    "f": r"(G1|G2|H1|H2)",
    "c": r"([1-3])",
    "i": r"(\d+)",
    "p": r"(weight|bias)",
    "rest": r"([\w.]+)",
}


def _regex(pattern: str) -> tuple[re.Pattern[str], list[str]]:
    names = re.findall(r"\{(\w+)\}", pattern)
    text = re.escape(pattern)
    for name in set(names):
        text = text.replace(re.escape("{" + name + "}"), _FIELDS[name])
    return re.compile(f"^{text}$"), names


_TABLE = [(*_regex(theirs), ours) for theirs, ours in INVCOMPRESS_KEYS]


def _rename(key: str) -> str | None:
    """Our name for the authors' ``key`` (``None``: not kept); ``KeyError`` when no pattern
    matches."""
    for regex, names, target in _TABLE:
        match = regex.match(key)
        if match is None:
            continue
        if target is None:
            return None
        values = dict(zip(names, match.groups(), strict=True))
        k = int(values.get("k", 0))
        values["dense"] = f"convs.{k - 1}" if k < 5 else "out"
        if "o" in values:
            values["node"] = str(int(values["o"]) + 1)
        return target.format(**values)
    raise KeyError(key)


# ------------------------------------------------------------------- shapes
def _conv(out: int, c_in: int, k: int) -> dict[str, tuple[int, ...]]:
    return {"weight": (out, c_in, k, k), "bias": (out,)}


def _add(shapes: dict[str, tuple[int, ...]], prefix: str, conv: dict[str, tuple[int, ...]]) -> None:
    for name, shape in conv.items():
        shapes[f"{prefix}.{name}"] = shape


def _dense(shapes: dict[str, tuple[int, ...]], prefix: str, c_in: int, c_out: int) -> None:
    for k in range(1, 6):
        _add(shapes, f"{prefix}.conv{k}", _conv(32 if k < 5 else c_out, c_in + 32 * (k - 1), 3))


def authors_shapes(n: int) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the parameters (and the context model's mask) in the state
    dict of the authors' ``InvCompress(N=n)``, from their modules (``ours.py``,
    ``our_utils.py``, CompressAI's ``Cheng2020Anchor``, ``EntropyBottleneck``)."""
    shapes: dict[str, tuple[int, ...]] = {}
    half, wide = n // 2, n * 3 // 2
    for part in ("forw_enh", "back_enh"):  # EnhBlock(64)
        _dense(shapes, f"enh.{part}.layers.0", 3, 64)
        _add(shapes, f"enh.{part}.layers.1", _conv(64, 64, 1))
        _add(shapes, f"enh.{part}.layers.2", _conv(64, 64, 3))
        _add(shapes, f"enh.{part}.layers.3", _conv(64, 64, 1))
        _dense(shapes, f"enh.{part}.layers.4", 64, 3)
    for level, k in enumerate((5, 5, 3, 3)):  # InvComp: squeeze, 1x1, three couplings
        c = 12 * 4**level
        shapes[f"inv.operations.{5 * level + 1}.weight"] = (c, c)
        for o in range(5 * level + 2, 5 * level + 5):
            for f, c_in, c_out in (("G1", c // 4, c - c // 4), ("G2", c - c // 4, c // 4)):
                for g in (f, "H" + f[1]):
                    prefix = f"inv.operations.{o}.{g}"
                    _add(shapes, f"{prefix}.conv1", _conv(c_out, c_in, k))
                    _add(shapes, f"{prefix}.conv2", _conv(c_out, c_out, 1))
                    _add(shapes, f"{prefix}.conv3", _conv(c_out, c_out, k))
    for part in ("forw_att", "back_att"):  # AttentionBlock(N)
        for branch in ("conv_a", "conv_b"):
            for u in range(3):
                prefix = f"attention.{part}.{branch}.{u}.conv"
                _add(shapes, f"{prefix}.0", _conv(half, n, 1))
                _add(shapes, f"{prefix}.2", _conv(half, half, 3))
                _add(shapes, f"{prefix}.4", _conv(n, half, 1))
        _add(shapes, f"attention.{part}.conv_b.3", _conv(n, n, 1))
    for i in range(5):
        _add(shapes, f"h_a.{2 * i}", _conv(n, n, 3))
    _add(shapes, "h_s.0", _conv(n, n, 3))
    _add(shapes, "h_s.2.0", _conv(4 * n, n, 3))
    _add(shapes, "h_s.4", _conv(wide, n, 3))
    _add(shapes, "h_s.6.0", _conv(4 * wide, wide, 3))
    _add(shapes, "h_s.8", _conv(2 * n, wide, 3))
    widths = (n * 12 // 3, n * 10 // 3, n * 8 // 3, n * 6 // 3)
    for i in range(3):
        _add(shapes, f"entropy_parameters.{2 * i}", _conv(widths[i + 1], widths[i], 1))
    _add(shapes, "context_prediction", _conv(2 * n, n, 5))
    shapes["context_prediction.mask"] = (2 * n, n, 5, 5)
    filters = (1, 3, 3, 3, 3, 1)
    for i in range(5):
        shapes[f"entropy_bottleneck._matrix{i}"] = (n, filters[i + 1], filters[i])
        shapes[f"entropy_bottleneck._bias{i}"] = (n, filters[i + 1], 1)
        if i < 4:
            shapes[f"entropy_bottleneck._factor{i}"] = (n, filters[i + 1], 1)
    shapes["entropy_bottleneck.quantiles"] = (n, 1, 3)
    return shapes


def _listed(found: list[str]) -> str:
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return "; ".join(found[:3]) + more


# ------------------------------------------------------------------- import
def convert_invcompress(
    state: Mapping[str, Tensor], *, config: str | None = None, path: Path | None = None
) -> ImportedModel:
    """The authors' InvCompress state dict (see the module) as the ``compression`` task's
    network (an :class:`~invblocks.published.Importer`, registered as ``invcompress``).

    Raises ``ValueError`` in one sentence naming the first keys that are missing,
    unexpected or of the wrong shape, or a mask that is not type A.
    """
    if config is not None:
        raise ValueError(
            "InvCompress networks are worked out from the file; --config is for IICNet"
        )
    first = state.get("h_a.0.weight")
    if first is None or first.dim() != 4:
        raise ValueError(
            "the file holds no InvCompress tensors (expected names like 'h_a.0.weight'; "
            f"found {sorted(state)[:3]})"
        )
    n = int(first.shape[0])
    if n < 2 or n % 2 or 768 % n:
        raise ValueError(f"h_a.0.weight gives N = {n}; InvCompress's N is an even divisor of 768")
    expected = authors_shapes(n)
    found = [
        f"{key} {shape} is missing"
        for key, shape in expected.items()
        if key not in state and key != "context_prediction.mask"
    ]
    found += [
        f"{key} is {tuple(state[key].shape)}, expected {shape}"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    found += [
        f"{key} is not expected" for key in state if key not in expected and key not in NOT_NEEDED
    ]
    if found:
        raise ValueError(f"the file does not fit InvCompress (N={n}): {_listed(found)}")
    mask = state.get("context_prediction.mask")
    if mask is not None and not torch.equal(mask.float(), _mask("serial", 5).expand_as(mask)):
        raise ValueError(
            "context_prediction.mask is not the type-A mask (the taps before the centre in "
            "raster order) that the serial context uses"
        )
    net = invcompress(n=n, start="random", context="serial")
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in expected:
            name = _rename(key)
            if name is not None:
                converted[name] = value.float()
    own = net.state_dict()
    kept = {k for k in own if k.startswith("channel.z_") or k == "channel.context_prediction.mask"}
    missing = sorted(set(own) - set(converted) - kept)
    if missing:  # cannot happen while the table, authors_shapes and the preset agree
        raise RuntimeError(f"INVCOMPRESS_KEYS leaves out {_listed(missing)}")
    net.load_state_dict({**{k: own[k] for k in kept}, **converted})
    channel = net.channel
    assert isinstance(channel, EntropyCoded)
    with torch.no_grad():  # the coder's tables from the file's quantiles, as the authors' update()
        channel.z_pmf, channel.z_minima, channel.z_medians = channel.density.coding_tables()
    return ImportedModel(
        net=net.eval(), task="compression", n_inputs=1, config=f"invcompress N={n}"
    )
