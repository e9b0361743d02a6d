"""The published models: the IICNet and WIN authors' checkpoints as invblocks model folders.

:func:`import_weights` reads a checkpoint in the authors' format (a ``torch.save`` of the
network's state dict, with or without DataParallel's ``module.`` prefix), loaded with
``torch.load(weights_only=True)`` so that nothing in the file is ever executed; works out
the network from its tensors' names and shapes; renames the tensors to invblocks' names
(:data:`IICNET_KEYS`, :data:`WIN_KEYS`); and writes an ordinary model folder
(``model.safetensors`` + ``config.json``) that embedding, restoring, evaluation and
fine-tuning (``TrainConfig.init``) use as they are.

IICNet's models were trained on images read with OpenCV, in BGR order: their
:class:`~invblocks.ric.network.RICNet` has ``channel_order="bgr"``, so it takes and gives RGB like
every invblocks model. WIN reads images with imageio (RGB): no conversion.

Other papers' checkpoints come from plugins: a plugin's ``invblocks_register_importers`` hook
registers a method by name (an :class:`Importer`, ``f(state, *, config, path) ->
ImportedModel``), which :func:`import_weights` and ``invblocks import-weights NAME FILE`` then
take like the core's (:func:`importers` lists them all); its model folder is written the same
way.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs
import torch
from torch import Tensor

from . import blocks as B
from . import presets
from .checkpoint import save_model
from .registry import NamedRegistry
from .ric.network import RICNet
from .ric.quantizer import Quantizer
from .sequence import Sequence

__all__ = [
    "IICNET_CONFIGS",
    "IICNET_KEYS",
    "IMPORTERS",
    "METHODS",
    "WIN_KEYS",
    "IICNetConfig",
    "ImportedModel",
    "Importer",
    "convert",
    "import_weights",
    "importers",
    "read_state_dict",
    "register_importer",
]

METHODS = ("iicnet", "win", "win-naive")
"""The core's ``import-weights`` methods (plugins add more: :func:`importers`)."""


@attrs.frozen
class IICNetConfig:
    """One of the IICNet authors' configurations (``codes/conf/test/<name>.yml``).

    Arguments:
        name: The configuration's name (``st-01``).
        n_images: Images stacked on channels (``num_of_frames``).
        relation: Whether it has the relation module (``use_rel``).
        downscale: ``"haar"``, ``"squeeze"`` or ``None`` (``use_down``, ``type``).
        order: Channel order after the downscale (``"ref"`` or ``"hl"``).
        blocks: Couplings (``block_num``).
        out_channels: Embedding channels (``cs.out_nc``).
        task: The invblocks task it is a model of.
    """

    name: str
    n_images: int
    relation: bool
    downscale: Literal["haar", "squeeze"] | None
    order: Literal["ref", "hl"]
    blocks: int
    out_channels: int
    task: str


def _configs(*rows: tuple[Any, ...]) -> dict[str, IICNetConfig]:
    return {row[0]: IICNetConfig(*row) for row in rows}


IICNET_CONFIGS: dict[str, IICNetConfig] = _configs(
    ("st-01", 5, True, None, "ref", 10, 3, "video"),
    ("st-02", 5, False, None, "ref", 30, 3, "video"),
    ("st-03", 5, True, None, "ref", 10, 3, "video"),
    ("st-04", 7, True, None, "ref", 10, 3, "video"),
    ("st-05", 9, True, None, "ref", 10, 3, "video"),
    ("st-06", 3, True, "haar", "hl", 10, 3, "video-x2"),
    ("st-07", 5, True, "squeeze", "ref", 10, 3, "video-x2"),
    ("mono-01", 2, True, None, "ref", 16, 3, "mononizing"),
    ("mono-02", 2, False, None, "ref", 24, 3, "mononizing"),
    ("mono-03", 2, True, None, "ref", 16, 3, "mononizing"),
    ("dual-01", 2, True, None, "ref", 10, 3, "dual-view-x2"),
    ("dual-02", 2, True, None, "ref", 10, 3, "dual-view-x4"),
    ("dual-03", 2, True, None, "ref", 10, 3, "dual-view-x8"),
    ("adobe-01", 3, True, None, "ref", 10, 3, "composition"),
    ("real-01", 2, True, None, "ref", 10, 3, "composition"),
    ("hide-01", 2, True, None, "ref", 10, 3, "hiding"),
    ("hide-02", 3, True, None, "ref", 10, 3, "hiding"),
    ("hide-03", 4, True, None, "ref", 10, 3, "hiding"),
    ("hide-04", 5, True, None, "ref", 10, 3, "hiding"),
    ("hide-05", 5, False, None, "ref", 30, 3, "hiding"),
    ("hide-06", 5, True, None, "ref", 10, 3, "hiding"),
    ("supp-gray-01", 1, True, None, "ref", 16, 1, "grayscale"),
    ("supp-sr-01", 1, True, "squeeze", "hl", 16, 3, "rescaling-x2"),
)
"""Every configuration the IICNet authors publish a model of, from their config files."""

# ----------------------------------------------------------------- key tables
# Patterns: {i}, {b}, {s}, {t}, {j} numbers; {k} a dense-block convolution 1-5 ({dense}: its
# invblocks name); {f} one of a coupling's subnets F, G, H; {p} weight or bias. On the
# invblocks side {node} is the coupling's node, {conv1x1} the 1x1 convolution's, {m} = t + 1.

IICNET_KEYS: list[tuple[str, str | None]] = [
    *[
        (f"0.{theirs}.{a}", f"body.nodes.0.{ours}.{b}")
        for theirs, ours in (("forw_rel", "forward_net"), ("back_rel", "inverse_net"))
        for a, b in (
            ("DB_heads.{i}.conv{k}.{p}", "headers.{i}.0.{dense}.{p}"),
            ("conv_1x1_heads.{i}.{p}", "headers.{i}.1.{p}"),
            ("conv_merges.{i}.{p}", "tailers.{i}.0.{p}"),
            ("conv_1x1_tails.{i}.{p}", "tailers.{i}.1.{p}"),
            ("DB_tails.{i}.conv{k}.{p}", "tailers.{i}.2.{dense}.{p}"),
        )
    ],
    ("1.operations.0.haar_weights", None),  # the fixed Haar kernels: checked, not kept
    ("1.operations.1.weight", "body.nodes.{conv1x1}.weight"),
    ("2.operations.{b}.{f}.conv{k}.{p}", "body.nodes.{node}.{f}.{dense}.{p}"),
]
"""The IICNet authors' state-dict names (their ``ModuleList[rel, down, block, cs, quant]``)
and invblocks' names for them (``None``: not kept)."""

WIN_KEYS: list[tuple[str, str | None]] = [
    ("operations.{s}.iConv2d.weight", "body.nodes.{s}.weight"),
    ("operations.{s}.transform.{t}.iConv2d.weight", "body.nodes.{s}.nodes.wic{m}.weight"),
    (
        "operations.{s}.feature.{t}_{j}.{f}.conv{k}.{p}",
        "body.nodes.{s}.nodes.flows{m}.nodes.{j}.{f}.{dense}.{p}",
    ),
    ("operations.{s}.tail.0.{f}.conv{k}.{p}", "body.nodes.{s}.nodes.tail.{f}.{dense}.{p}"),
    ("operations.{s}.{f}.conv{k}.{p}", "body.nodes.{s}.{f}.{dense}.{p}"),  # WIN-Naive's flows
]
"""The WIN authors' state-dict names (``model.py``'s ``WIN`` and ``WIN_Naive``) and
invblocks' names for them. A WIC's ``(M, C, 1, 1)`` convolution weight becomes ``(M, C)``."""

_FIELDS = {
    "i": r"(\d+)",
    "b": r"(\d+)",
    "s": r"(\d+)",
    "t": r"(\d+)",
    "j": r"(\d+)",
    "k": r"([1-5])",
    "f": r"([FGH])",
    "p": r"(weight|bias)",
}


def _regex(pattern: str) -> tuple[re.Pattern[str], list[str]]:
    names = re.findall(r"\{(\w)\}", pattern)
    text = re.escape(pattern)
    for name in set(names):
        text = text.replace(re.escape("{" + name + "}"), _FIELDS[name])
    return re.compile(f"^{text}$"), names


_IICNET = [(*_regex(a), b) for a, b in IICNET_KEYS]
_WIN = [(*_regex(a), b) for a, b in WIN_KEYS]


def _rename(key: str, table: list[Any], extra: Mapping[str, int]) -> str | None:
    """invblocks' name for ``key``; ``None`` for a key that is not kept; ``KeyError`` when no
    pattern matches."""
    for regex, names, target in table:
        match = regex.match(key)
        if match is None:
            continue
        if target is None:
            return None
        values: dict[str, Any] = dict(zip(names, match.groups(), strict=True))
        k = int(values.get("k", 0))
        values["dense"] = f"convs.{k - 1}" if k < 5 else "out"
        if "b" in values:
            values["node"] = extra["offset"] + int(values["b"])
        if "t" in values:
            values["m"] = int(values["t"]) + 1
        return str(target.format(conv1x1=extra.get("conv1x1", 0), **values))
    raise KeyError(key)


# ------------------------------------------------------------------ reading
def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint file, loaded with ``torch.load(weights_only=True)`` (only
    tensors and plain containers; a file that needs arbitrary unpickling is refused without
    running any of it). DataParallel's ``module.`` prefix is removed; a state dict nested
    under ``state_dict``, ``model``, ``net`` or ``params`` is taken from there.

    Raises ``ValueError`` in one sentence for a missing, unreadable or unpickling file, or one
    that holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist or is not a file")
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # e.g. about pickle protocols: the errors below say it
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for files that are not checkpoints
        text = str(err).strip()
        if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in text:
            if "Unsupported global" in text or "Unsupported class" in text:
                raise ValueError(
                    f"{path} is not a plain state dict: loading it would run code from the "
                    "file (refused; nothing in it was run)"
                ) from None
            text = "it is neither a torch.save file nor a pickle of tensors"
        reason = text.splitlines()[0] if text else type(err).__name__
        if len(reason) < 8:  # a bare key or code ("101": the file's first byte, 'e')
            reason = "it is neither a torch.save file nor a pickle of tensors"
        raise ValueError(f"cannot read {path} as a PyTorch checkpoint: {reason}") from None
    for key in ("state_dict", "model", "net", "params"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a state dict of tensors")
    tensors = {str(k): v for k, v in data.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"{path} holds no tensors (keys: {sorted(map(str, data))[:5]})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


_MAX_RATIO = 16
"""How much larger than its compressed size an entry of a checkpoint's zip archive may say it
is. ``torch.save`` stores its entries uncompressed (ratio 1); a zip bomb's ratio is in the
thousands."""


def _check_archive(path: Path) -> None:
    """Refuse a zip archive (``torch.save``'s format) whose table of contents promises more
    than it can hold, before anything is inflated: an entry compressed more than
    :data:`_MAX_RATIO` times (a zip bomb), entries that add up to more memory than is free,
    or names that leave the archive's one folder."""
    import zipfile

    from .model import available_memory

    if not zipfile.is_zipfile(path):
        return  # the legacy pickle format: torch.load's weights_only guards it
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"cannot read {path} as a PyTorch checkpoint: {err}") from None
    roots = {e.filename.split("/", 1)[0] for e in entries}
    if len(roots) > 1 or any(e.filename.startswith("/") or ".." in e.filename for e in entries):
        raise ValueError(f"{path} is not a torch.save archive (its entries are not in one folder)")
    for e in entries:
        if e.file_size > _MAX_RATIO * e.compress_size + (1 << 20):
            raise ValueError(
                f"{path} declares {e.file_size / 2**30:.1f} GiB in an entry of "
                f"{e.compress_size / 2**20:.1f} MiB (a zip bomb?); refused before reading it"
            )
    total, free = sum(e.file_size for e in entries), available_memory()
    if free is not None and total > free:
        raise ValueError(
            f"{path} holds {total / 2**30:.1f} GiB of tensors and {free / 2**30:.1f} GiB are free"
        )


# ---------------------------------------------------------- IICNet shapes
def _dense(prefix: str, c_in: int, c_out: int, growth: int = 32) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(1, 6):
        out = growth if k < 5 else c_out
        shapes[f"{prefix}.conv{k}.weight"] = (out, c_in + (k - 1) * growth, 3, 3)
        shapes[f"{prefix}.conv{k}.bias"] = (out,)
    return shapes


def iicnet_shapes(config: IICNetConfig) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the state dict the IICNet authors' code saves for
    ``config``, following their modules (relation width 64, dense-block growth 32)."""
    n, width = config.n_images, 64
    shapes: dict[str, tuple[int, ...]] = {}
    if config.relation:
        for part in ("forw_rel", "back_rel"):
            for i in range(n):
                p = f"0.{part}"
                shapes.update(_dense(f"{p}.DB_heads.{i}", 3, width))
                shapes[f"{p}.conv_1x1_heads.{i}.weight"] = (width, width, 1, 1)
                shapes[f"{p}.conv_1x1_heads.{i}.bias"] = (width,)
                shapes[f"{p}.conv_merges.{i}.weight"] = (width, width * n, 3, 3)
                shapes[f"{p}.conv_merges.{i}.bias"] = (width,)
                shapes[f"{p}.conv_1x1_tails.{i}.weight"] = (width, width, 1, 1)
                shapes[f"{p}.conv_1x1_tails.{i}.bias"] = (width,)
                shapes.update(_dense(f"{p}.DB_tails.{i}", width, 3))
    channels = 3 * n
    split = config.out_channels
    if config.downscale is not None:
        if config.downscale == "haar":
            shapes["1.operations.0.haar_weights"] = (4 * channels, 1, 2, 2)
        shapes["1.operations.1.weight"] = (4 * channels, 4 * channels)
        split = 4 * config.out_channels if config.order == "ref" else channels
        channels *= 4
    for b in range(config.blocks):
        p = f"2.operations.{b}"
        shapes.update(_dense(f"{p}.F", channels - split, split))
        shapes.update(_dense(f"{p}.G", split, channels - split))
        shapes.update(_dense(f"{p}.H", split, channels - split))
    return shapes


def _mismatches(state: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    found = []
    for key, shape in expected.items():
        if key not in state:
            found.append(f"{key} {shape} is missing")
        elif tuple(state[key].shape) != shape:
            found.append(f"{key} is {tuple(state[key].shape)}, expected {shape}")
    found += [f"{key} is not expected" for key in state if key not in expected]
    return found


def _iicnet_config(
    state: Mapping[str, Tensor], name: str | None, path: Path | None
) -> IICNetConfig:
    """The configuration of an IICNet state dict: ``name`` when given (checked), else the
    one its shapes fit, or, among several that fit, the one the file's path names."""
    if name is not None:
        if name not in IICNET_CONFIGS:
            raise ValueError(
                f"unknown IICNet configuration {name!r}; known: {', '.join(IICNET_CONFIGS)}"
            )
        bad = _mismatches(state, iicnet_shapes(IICNET_CONFIGS[name]))
        if bad:
            raise ValueError(
                f"the file does not fit IICNet {name}: {'; '.join(bad[:3])}"
                + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else "")
            )
        return IICNET_CONFIGS[name]
    fits = [c for c in IICNET_CONFIGS.values() if not _mismatches(state, iicnet_shapes(c))]
    if not fits:
        nearest = min(
            IICNET_CONFIGS.values(), key=lambda c: len(_mismatches(state, iicnet_shapes(c)))
        )
        bad = _mismatches(state, iicnet_shapes(nearest))
        raise ValueError(
            f"this is not a state dict of a published IICNet configuration; the nearest, "
            f"{nearest.name}, differs: {'; '.join(bad[:3])}"
        )
    hinted = [c for c in fits if path is not None and _names(path, c.name)]
    if len(hinted) == 1:
        return hinted[0]
    if len({(c.task, c.n_images) for c in fits}) == 1:
        return fits[0]  # the same network for the same task (mono-01 and mono-03)
    raise ValueError(
        f"the file fits the IICNet configurations {', '.join(c.name for c in fits)}, which are "
        "different tasks; say which with --config NAME"
    )


def _names(path: Path, name: str) -> bool:
    """Whether the file's name or one of its folders names the configuration (the authors'
    files are ``experiments/<config>/models/latest.pth``)."""
    return any(
        re.search(rf"(^|[^a-z0-9]){re.escape(name)}($|[^0-9])", part)
        for part in (path.stem.lower(), *(p.name.lower() for p in path.parents))
    )


_HAAR = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]).float()


def _iicnet_network(state: Mapping[str, Tensor], config: IICNetConfig) -> tuple[RICNet, dict]:
    haar = state.get("1.operations.0.haar_weights")
    if haar is not None:
        expected = _HAAR.reshape(4, 1, 2, 2).repeat(haar.shape[0] // 4, 1, 1, 1)
        if not torch.equal(haar.float(), expected):
            raise ValueError("its Haar weights are not the fixed Haar kernels IICNet uses")
    net = presets.iicnet(
        config.n_images,
        config.blocks,
        config.downscale,
        config.out_channels,
        relation=config.relation,
        order=config.order,
        conv1x1="plain",
    )
    net = RICNet(net.body, net.channel, channel_order="bgr")
    offset = (1 if config.relation else 0) + (2 if config.downscale else 0)
    extra = {"offset": offset, "conv1x1": (1 if config.relation else 0) + 1}
    renamed = {k: _rename(k, _IICNET, extra) for k in state}
    return net, {name: state[k] for k, name in renamed.items() if name is not None}


# ------------------------------------------------------------------- WIN
def _ops(state: Mapping[str, Tensor]) -> dict[int, dict[str, Tensor]]:
    ops: dict[int, dict[str, Tensor]] = {}
    for key, value in state.items():
        match = re.match(r"^operations\.(\d+)\.(.+)$", key)
        if match is None:
            raise ValueError(f"{key!r} is not a WIN tensor name (expected 'operations.<i>...')")
        ops.setdefault(int(match[1]), {})[match[2]] = value
    return ops


def _wic_shape(op: Mapping[str, Tensor], where: str) -> tuple[int, int]:
    weight = op.get("iConv2d.weight")
    if weight is None or weight.dim() != 4:
        raise ValueError(f"{where}: expected a WIC (iConv2d.weight of shape (M, C, 1, 1))")
    return int(weight.shape[0]), int(weight.shape[1])


def _flow_channels(op: Mapping[str, Tensor], prefix: str, where: str) -> int:
    f, g = op.get(f"{prefix}F.conv1.weight"), op.get(f"{prefix}G.conv1.weight")
    if f is None or g is None:
        raise ValueError(
            f"{where}: expected a Flow ({prefix}F.conv1.weight, {prefix}G.conv1.weight)"
        )
    return int(f.shape[1]) + int(g.shape[1])  # split_len2 + split_len1


def _out_channels(task: str, m: int, c: int) -> int:
    out = {"grayscale": 1, "rescaling-x4": 12}.get(task, 3)
    k = math.ceil(c / out) if out < c else 1
    if out * k != m:
        raise ValueError(
            f"the fusion WIC is ({m}, {c}); a {task} model's would be ({out * k}, {c})"
        )
    return out


def _win_layout(ops: dict[int, dict[str, Tensor]], method: str) -> tuple[list[int], int, int]:
    """The indices of the WICMs (WIN) or Flows (WIN-Naive), the scale, the input channels."""
    last = max(ops)
    if method == "win":
        stages = sorted(i for i, op in ops.items() if any(k.startswith("transform.") for k in op))
        if not stages:
            raise ValueError(
                "no WICM module (operations.<i>.transform...): is this a WIN-Naive file?"
            )
        scale = 1 if last == stages[-1] + 2 else 2 ** len(stages)
        if scale == 1 and len(stages) != 1:
            raise ValueError(f"a WIN layout this version does not know: WICMs at {stages}")
        c_in = _wic_shape(ops[stages[0] - 1], f"operations.{stages[0] - 1}")[1] // 4
        return stages, scale, c_in
    flows = sorted(i for i, op in ops.items() if "F.conv1.weight" in op)
    if not flows:
        raise ValueError("no Flow (operations.<i>.F.conv1.weight): is this a WIN file?")
    scale = 1 if last == flows[-1] + 2 else 2 ** flows[0]
    channels = _flow_channels(ops[flows[0]], "", f"operations.{flows[0]}")
    return flows, scale, channels // 4 if scale == 1 else 3


def _win_task(scale: int, c_in: int) -> str:
    """The invblocks task of a WIN model of this scale and input channel count."""
    if scale == 1:
        if c_in % 3 or not 1 <= c_in // 3 <= 5:
            raise ValueError(f"a scale-1 WIN model of {c_in} input channels is no task here")
        return "grayscale" if c_in == 3 else "hiding"
    task = {2: "rescaling-x2", 4: "rescaling-x4"}.get(scale, "")
    if not task:
        raise ValueError(f"a x{scale} WIN rescaling model is no task here (x2 and x4 are)")
    return task


def _win_body(
    ops: dict[int, dict[str, Tensor]], stages: list[int], c_in: int, out: int, scale: int
) -> Sequence:
    """WIN's body: per WICM a channel squeeze, a reducing WIC and the WICM; the fusion WIC."""
    body = Sequence(c_in, 64, 64)
    for s in stages:
        op = ops[s]
        modules = len({k.split(".")[1] for k in op if k.startswith("transform.")})
        blocks = len({k.split(".")[1] for k in op if k.startswith("feature.0_")})
        n, short = _wic_shape(
            {"iConv2d.weight": op["transform.0.iConv2d.weight"]}, f"operations.{s}.transform.0"
        )
        body.append(B.Squeeze, order="channel")
        body.append(B.WIC, out_channels=short)
        _, h, w = body.dims_out[0]
        ratio = short / n
        if int(n * ratio) != short:
            raise ValueError(f"operations.{s}: a WICM of {n} channels with {short} short-term")
        body.append(presets.wicm(n, modules, blocks, ratio, size=(h, w)))
    if scale == 1:
        body.append(B.Unsqueeze, order="channel")
    return body.append(B.WIC, out_channels=out)


def _win_network(state: Mapping[str, Tensor], method: str) -> tuple[RICNet, str, int, dict]:
    ops = _ops(state)
    last = max(ops)
    fusion_m, fusion_c = _wic_shape(ops[last], f"operations.{last}")
    stages, scale, c_in = _win_layout(ops, method)
    task = _win_task(scale, c_in)
    out = _out_channels(task, fusion_m, fusion_c)
    if method == "win":
        body = _win_body(ops, stages, c_in, out, scale)
    else:
        body = presets.win_naive(c_in, out, scale=scale, blocks=len(stages), size=(64, 64)).body
    if out == 12:  # WIN x4: four copies of the LR image, averaged (and repeated back) as WIN tests
        body.append(B.ChannelSqueeze, out_channels=3)
    net = RICNet(body, Quantizer(body.dims_out, train_mode="identity"))
    converted = {}
    for key, value in state.items():
        name = _rename(key, _WIN, {})
        if name is not None:
            converted[name] = value[:, :, 0, 0] if key.endswith("iConv2d.weight") else value
    n_inputs = c_in // 3 if task == "hiding" else 1
    return net, task, n_inputs, converted


# -------------------------------------------------------------- import
@attrs.frozen
class ImportedModel:
    """A published checkpoint as an invblocks network (:func:`convert`).

    Arguments:
        net: The network, holding the file's weights.
        task: The invblocks task it is a model of.
        n_inputs: Images per embedding.
        config: The authors' configuration (``st-01``; for WIN a description).
    """

    net: RICNet
    task: str
    n_inputs: int
    config: str


class Importer(Protocol):
    """What an ``import-weights`` method is: ``f(state, *, config, path) -> ImportedModel``.

    ``state`` is the file's tensors (:func:`read_state_dict`: read without running code, the
    ``module.`` prefix removed, a nested ``state_dict`` taken out); ``config`` the user's
    ``--config`` (``None`` unless given; refuse it in one sentence where the method has no
    use for it); ``path`` the file, where its name says something (``None`` when converting
    a state dict in memory). It returns the network holding the weights (in evaluation
    mode), the name of a registered task, the images per embedding and a short description
    for messages and the model folder. It raises ``ValueError`` in one sentence, naming the
    first key that is missing, unexpected or of the wrong shape, for a file it cannot
    convert.
    """

    def __call__(
        self, state: Mapping[str, Tensor], *, config: str | None, path: Path | None
    ) -> ImportedModel: ...


def _import_iicnet(
    state: Mapping[str, Tensor], *, config: str | None, path: Path | None
) -> ImportedModel:
    if config is not None or any(k[:2] in ("0.", "1.", "2.") for k in state):
        chosen = _iicnet_config(state, config, path)
    else:
        raise ValueError(
            "the file holds no IICNet tensors (expected names like "
            f"'2.operations.0.F.conv1.weight'; found {sorted(state)[:3]})"
        )
    net, converted = _iicnet_network(state, chosen)
    _load(net, converted, chosen.name)
    return ImportedModel(
        net=net.eval(), task=chosen.task, n_inputs=chosen.n_images, config=chosen.name
    )


def _import_win_family(
    method: str, state: Mapping[str, Tensor], config: str | None
) -> ImportedModel:
    if config is not None:
        raise ValueError("WIN networks are worked out from the file; --config is for IICNet")
    if not all(k.startswith("operations.") for k in state):
        raise ValueError(
            "the file holds no WIN tensors (expected names like "
            f"'operations.1.iConv2d.weight'; found {sorted(state)[:3]})"
        )
    net, task, n_inputs, converted = _win_network(state, method)
    name = f"{method} {task}" + (f" ({n_inputs - 1} secret(s))" if task == "hiding" else "")
    _load(net, converted, name)
    return ImportedModel(net=net.eval(), task=task, n_inputs=n_inputs, config=name)


def _import_win(
    state: Mapping[str, Tensor], *, config: str | None, path: Path | None
) -> ImportedModel:
    return _import_win_family("win", state, config)


def _import_win_naive(
    state: Mapping[str, Tensor], *, config: str | None, path: Path | None
) -> ImportedModel:
    return _import_win_family("win-naive", state, config)


def _load(net: RICNet, converted: Mapping[str, Tensor], name: str) -> None:
    """Load ``converted`` into ``net`` (as float32); ``ValueError`` naming the first
    tensors of the wrong shape or missing."""
    expected = net.state_dict()
    bad = [
        f"{k} is {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
        for k, v in converted.items()
        if k in expected and v.shape != expected[k].shape
    ]
    missing = sorted(set(expected) - set(converted))
    if bad or missing:
        listed = bad[:3] + [f"{k} missing" for k in missing[: max(0, 3 - len(bad))]]
        raise ValueError(f"the file does not fit the {name} network: {'; '.join(listed)}")
    net.load_state_dict({k: v.float() for k, v in converted.items()})


def _check_importer(fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"an import-weights method is a function; received {fn!r}")


IMPORTERS: NamedRegistry[Importer] = NamedRegistry("import-weights method", check=_check_importer)
"""The ``import-weights`` methods of the core (:data:`METHODS`) and of
:func:`register_importer`, by name; plugins add theirs through the
``invblocks_register_importers`` hook (:func:`importers` lists both)."""
IMPORTERS.register(_import_iicnet, "iicnet")
IMPORTERS.register(_import_win, "win")
IMPORTERS.register(_import_win_naive, "win-naive")


def register_importer(name: str, fn: Importer, *, owner: str = "invblocks") -> Importer:
    """Make ``fn`` (an :class:`Importer`) the ``import-weights`` method ``name``, for
    :func:`convert`, :func:`import_weights` and ``invblocks import-weights NAME FILE``.
    Returns ``fn``. A plugin registers its methods through the
    ``invblocks_register_importers`` hook instead.

    Raises ``ValueError`` naming both owners when ``name`` is taken by another function,
    ``TypeError`` when ``fn`` is not callable.
    """
    return IMPORTERS.register(fn, name, owner=owner)


def importers() -> dict[str, Importer]:
    """Every ``import-weights`` method by name: :data:`IMPORTERS` and the loaded plugins'
    (:func:`invblocks.plugins.get_registry`). Raises ``ValueError`` naming both owners when
    a plugin's method has the name of another."""
    from .plugins import get_registry

    found = dict(IMPORTERS)
    plugged = get_registry().importers
    for name, fn in plugged.items():
        if name in found and found[name] is not fn:
            raise ValueError(
                f"import-weights method name {name!r} registered twice: by {IMPORTERS.owner(name)} "
                f"and by {plugged.owner(name)}"
            )
        found[name] = fn
    return found


def _importer(method: str) -> Importer:
    """The method ``method``; the plugins are loaded only for a name the core does not know."""
    known = IMPORTERS if method in IMPORTERS else importers()
    if method not in known:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(known)}")
    return known[method]


def convert(
    state: Mapping[str, Tensor],
    method: str,
    *,
    config: str | None = None,
    path: str | Path | None = None,
) -> ImportedModel:
    """A state dict in the authors' format (:func:`read_state_dict`) as an invblocks network.

    ``method``: ``"iicnet"``, ``"win"``, ``"win-naive"`` or a plugin's (:func:`importers`).
    For IICNet the configuration is worked out from the tensors' names and shapes; where
    several published configurations share one network for different tasks (st-01, st-03,
    hide-04 and hide-06 are all a 5-image network with 10 couplings), the one ``path`` names
    (the authors' files live in ``experiments/<config>/``) or ``config`` chooses. WIN's
    networks are worked out from their shapes alone (the number of secrets, the width, the
    scale).

    Raises ``ValueError`` in one sentence naming the first mismatched keys and shapes, or the
    known methods for an unknown one.
    """
    fn = _importer(method)
    model = fn(state, config=config, path=Path(path) if path is not None else None)
    if not isinstance(model, ImportedModel):
        raise TypeError(
            f"the import-weights method {method!r} returned {type(model).__name__}, "
            "not an ImportedModel"
        )
    return model


def import_weights(
    method: str,
    file: str | Path,
    out: str | Path,
    *,
    config: str | None = None,
) -> Path:
    """Read the authors' checkpoint ``file`` and write the invblocks model folder ``out``.

    The folder (``model.safetensors``, ``config.json``) is written atomically and works with
    :class:`~invblocks.model.Model`, ``invblocks embed``/``restore``/``eval``, and as the
    starting point of training (``TrainConfig.init``). ``out`` must not exist or be empty.
    ``method`` is one of :func:`importers` (:func:`convert`); an unknown one is refused
    before the file is read.

    Example::

        import_weights("iicnet", "experiments/st-01/models/latest.pth", "models/st01")
        model = invblocks.Model.load("models/st01")
    """
    file, out = Path(file), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder: choose another -o")
    _importer(method)
    state = read_state_dict(file)
    model = convert(state, method, config=config, path=file)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    meta = {
        "task": model.task,
        "n_inputs": model.n_inputs,
        "network": model.net.get_config(),
        "source": {"method": method, "config": model.config, "file": file.name, "sha256": digest},
    }
    if out.exists():
        out.rmdir()
    return save_model(out, net=model.net, meta=meta)
