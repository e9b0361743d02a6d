"""The authors' Invertible-ISP checkpoints (Invertible Image Signal Processing, CVPR 2021) as
invblocks networks: ``invblocks import-weights invisp FILE -o DIR``.

The authors' code (``yzxing87/Invertible-ISP``) saves the state dict of ``InvISPNet()``
(``torch.save(net.state_dict())``, ``pretrained/nikon.pth`` and ``pretrained/canon.pth``): 8
blocks, each an invertible 1x1 convolution in Glow's LU form (``operations.{b}.invconv``:
parameters ``lower``, ``upper``, ``log_s``, buffers ``p``, ``sign_s``) and a coupling with
dense-block subnets ``F``, ``G``, ``H``. It is read with
:func:`invblocks.published.read_state_dict` (never unpickled as code); the network is
:func:`~invblocks_camera.presets.invertible_isp` with its defaults (8 blocks, clamp 0.8, the
paper's JPEG channel), and every tensor is renamed by :data:`INVISP_KEYS`.

Their test scripts load a file with ``strict=False``, which runs a network with random
blocks where the file lacks tensors and ignores tensors it does not know: a missing or
unexpected name is refused here instead. What is taken loosely is only what cannot change
the function: DataParallel's ``module.`` prefix, any floating-point type (cast to float32),
and the LU entries the authors' code masks out when it forms the matrix, which are dropped:
``lower`` is stored with its unit diagonal (their ``lower * l_mask + eye``), ``upper``'s
entries on and below the diagonal are unused (``upper * l_mask.T``). The permutation ``p``
must be a permutation matrix (their reverse inverts it with ``torch.inverse``, invblocks
transposes it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from invblocks.published import ImportedModel

from .presets import invertible_isp

__all__ = ["BLOCKS", "INVISP_KEYS", "authors_shapes", "convert_invisp"]

BLOCKS = 8
"""Blocks of the authors' ``InvISPNet`` (``block_num=8`` in every script of theirs)."""

INVISP_KEYS: list[tuple[str, str]] = [
    ("operations.{b}.invconv.lower", "body.nodes.{conv1x1}.lower"),
    ("operations.{b}.invconv.upper", "body.nodes.{conv1x1}.upper"),
    ("operations.{b}.invconv.log_s", "body.nodes.{conv1x1}.log_s"),
    ("operations.{b}.invconv.p", "body.nodes.{conv1x1}.perm"),
    ("operations.{b}.invconv.sign_s", "body.nodes.{conv1x1}.sign_s"),
    ("operations.{b}.{f}.conv{k}.{p}", "body.nodes.{coupling}.{f}.{dense}.{p}"),
]
"""The authors' state-dict names (``InvISPNet``, ``InvBlock``, ``InvertibleConv1x1``,
``DenseBlock``) and invblocks' names for them. ``{b}``: a block 0-7 (ours: its 1x1
convolution is node ``{conv1x1}`` = 2 ``{b}``, its coupling node ``{coupling}`` = 2 ``{b}`` +
1); ``{f}``: a coupling's subnet ``F``, ``G`` or ``H``; ``{k}``: a dense-block convolution 1-5
(ours: ``convs.0`` to ``convs.3``, then ``out``: ``{dense}``); ``{p}``: ``weight`` or
``bias``. invblocks' ``lower_mask`` buffer (``tril(ones, -1)``) has no counterpart: the
authors rebuild theirs at every call."""

_FIELDS = {"b": r"(\d+)", "f": r"([FGH])", "k": r"([1-5])", "p": r"(weight|bias)"}


def _regex(pattern: str) -> tuple[re.Pattern[str], list[str]]:
    names = re.findall(r"\{(\w)\}", pattern)
    text = re.escape(pattern)
    for name in set(names):
        text = text.replace(re.escape("{" + name + "}"), _FIELDS[name])
    return re.compile(f"^{text}$"), names


_TABLE = [(*_regex(theirs), ours) for theirs, ours in INVISP_KEYS]


def _rename(key: str) -> str:
    """Our name for the authors' ``key``; ``KeyError`` when no pattern matches."""
    for regex, names, target in _TABLE:
        match = regex.match(key)
        if match is None:
            continue
        values: dict[str, str | int] = dict(zip(names, match.groups(), strict=True))
        k = int(values.get("k", 0))
        values["dense"] = f"convs.{k - 1}" if k < 5 else "out"
        values["conv1x1"] = 2 * int(values["b"])
        values["coupling"] = 2 * int(values["b"]) + 1
        return target.format(**values)
    raise KeyError(key)


# ------------------------------------------------------------------- shapes
def _dense(shapes: dict[str, tuple[int, ...]], prefix: str, c_in: int, c_out: int) -> None:
    for k in range(1, 6):
        out = 32 if k < 5 else c_out
        shapes[f"{prefix}.conv{k}.weight"] = (out, c_in + 32 * (k - 1), 3, 3)
        shapes[f"{prefix}.conv{k}.bias"] = (out,)


def authors_shapes(blocks: int = BLOCKS) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the state dict of the authors' ``InvISPNet(block_num=blocks)``
    (parameters and the buffers ``p``, ``sign_s``), from their modules (``model.py``,
    ``modules.py``: 3 channels split 1 | 2, dense blocks of growth 32)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for b in range(blocks):
        prefix = f"operations.{b}"
        _dense(shapes, f"{prefix}.F", 2, 1)
        _dense(shapes, f"{prefix}.G", 1, 2)
        _dense(shapes, f"{prefix}.H", 1, 2)
        for name, shape in (
            ("lower", (3, 3)),
            ("log_s", (3,)),
            ("upper", (3, 3)),
            ("p", (3, 3)),
            ("sign_s", (3,)),
        ):
            shapes[f"{prefix}.invconv.{name}"] = shape
    return shapes


def _listed(found: list[str]) -> str:
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return "; ".join(found[:3]) + more


def _is_permutation(p: Tensor) -> bool:
    ones = p == 1
    return bool(((p == 0) | ones).all() and (ones.sum(0) == 1).all() and (ones.sum(1) == 1).all())


# ------------------------------------------------------------------- import
def convert_invisp(
    state: Mapping[str, Tensor], *, config: str | None = None, path: Path | None = None
) -> ImportedModel:
    """The authors' InvISPNet state dict (see the module) as the ``isp`` task's network (an
    :class:`~invblocks.published.Importer`, registered as ``invisp``).

    Raises ``ValueError`` in one sentence naming the first keys that are missing,
    unexpected or of the wrong shape, or a ``p`` that is not a permutation matrix.
    """
    if config is not None:
        raise ValueError(
            "Invertible-ISP networks are worked out from the file; --config is for IICNet"
        )
    if not any(re.match(r"operations\.\d+\.(invconv|[FGH])\.", key) for key in state):
        raise ValueError(
            "the file holds no Invertible-ISP tensors (expected names like "
            f"'operations.0.invconv.lower'; found {sorted(state)[:3]})"
        )
    expected = authors_shapes()
    found = [f"{key} {shape} is missing" for key, shape in expected.items() if key not in state]
    found += [
        f"{key} is {tuple(state[key].shape)}, expected {shape}"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    found += [f"{key} is not expected" for key in state if key not in expected]
    found += [
        f"{key} is {state[key].dtype}, not floating point"
        for key in expected
        if key in state and not state[key].is_floating_point()
    ]
    if found:
        raise ValueError(f"the file does not fit InvISPNet ({BLOCKS} blocks): {_listed(found)}")
    for b in range(BLOCKS):
        key = f"operations.{b}.invconv.p"
        if not _is_permutation(state[key]):
            raise ValueError(
                f"{key} is not a permutation matrix (one 1 in every row and column, zeros "
                f"elsewhere): {state[key].tolist()}"
            )
        key = f"operations.{b}.invconv.sign_s"
        if not bool((state[key].abs() == 1).all()):
            raise ValueError(f"{key} must hold signs (1 or -1); received {state[key].tolist()}")
    bad = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"the file holds values that are not finite in {_listed(bad)}")
    net = invertible_isp(blocks=BLOCKS)
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith("invconv.lower"):
            value = torch.tril(value, -1)  # their unit diagonal: ours is added at use too
        elif key.endswith("invconv.upper"):
            value = torch.triu(value, 1)
        converted[_rename(key)] = value.float()
    own = net.state_dict()
    kept = {k for k in own if k.endswith(".lower_mask")}
    missing = sorted(set(own) - set(converted) - kept)
    if missing:  # cannot happen while the table, authors_shapes and the preset agree
        raise RuntimeError(f"INVISP_KEYS leaves out {_listed(missing)}")
    net.load_state_dict({**{k: own[k] for k in kept}, **converted})
    return ImportedModel(net=net.eval(), task="isp", n_inputs=1, config=f"invisp {BLOCKS} blocks")
