"""Checkpoints: weights in safetensors plus a JSON config, written atomically, never pickled code.

A run folder holds ``checkpoints/step-00000100/`` folders, each with ``model.safetensors``
(the network's state dict), ``config.json`` (format, library version, task, input count, the
network's JSON config, the training config, the step) and ``train_state.pt`` (optimizer
state and RNG state: tensors and plain containers only, loaded with
``torch.load(weights_only=True)``). ``checkpoints/LATEST`` names the newest complete one;
``checkpoints/best/`` (weights and config, with the validation it was kept for) is the network
of the best validation score so far (:meth:`~invblocks.ric.task.Task.verdict`).

Format ``invblocks-checkpoint-2`` holds a :class:`~invblocks.ric.network.RICNet`. Folders of format
``invblocks-checkpoint-1`` (invblocks 0.1.0, whose network was a ``Sequence`` ending in the
quantiser, or a WIN ``Sequence`` without one) are read as well: :func:`upgrade` turns their
config and weights into format 2 when they are loaded.

A checkpoint folder is filled under a temporary name, flushed, then renamed, and ``LATEST``
is replaced atomically afterwards; older folders are removed only after that. A process
killed at any moment leaves the previous checkpoint intact and ``LATEST`` pointing at a
complete folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ._text import short
from ._version import VERSION
from .io import atomic_write, check_regular, ensure_folder, file_mode, folder_mode, parse_json
from .registry import block_from_config

__all__ = [
    "BEST",
    "FORMAT",
    "FORMATS",
    "find_checkpoint",
    "load_checkpoint",
    "load_network",
    "save_checkpoint",
    "save_model",
    "upgrade",
]

FORMAT = "invblocks-checkpoint-2"
FORMATS = ("invblocks-checkpoint-1", FORMAT)
"""The formats this version reads (the first is upgraded when loaded)."""

BEST = "best"
"""The name of the folder in a run's ``checkpoints`` that holds its best-scored network."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_folder(
    final: Path,
    net: nn.Module,
    config: dict[str, Any],
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Fill ``final`` (weights, config, training state) under a temporary name in its parent
    folder, flush everything, then rename it into place: all of it appears, or nothing."""
    root = ensure_folder(final.parent)
    old: Path | None = None
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        os.chmod(tmp, folder_mode())  # mkdtemp makes it owner-only; the umask decides
        state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if train_state is not None:
            torch.save(train_state, tmp / "train_state.pt")
        for f in tmp.iterdir():
            os.chmod(f, file_mode())  # safetensors writes owner-only; the umask decides
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():  # moved aside, not removed, until the new folder is in place
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=root))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        _fsync_dir(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except (OSError, SafetensorError, RuntimeError) as err:  # a full disk, a vanished folder
        reason = _write_failure(err, root)  # before the temporary folder frees its space
        shutil.rmtree(tmp, ignore_errors=True)
        _put_back(old, final)
        raise ValueError(f"cannot write the checkpoint {final}: {reason}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _put_back(old, final)
        raise
    return final


def _put_back(old: Path | None, final: Path) -> None:
    """After a failed replacement, the previous folder back in place (moved aside into
    ``old``)."""
    if old is not None and not final.exists() and (old / final.name).is_dir():
        os.replace(old / final.name, final)
        shutil.rmtree(old, ignore_errors=True)


def _write_failure(err: BaseException, folder: Path) -> str:
    """Why a write into ``folder`` failed, in a few words: a full disk as such (by the error,
    or by the free space left: torch's writer reports it as a position mismatch), else the
    error's first line."""
    text = str(err)
    try:
        full = shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        full = False
    if (
        full
        or getattr(err, "errno", None) == 28
        or "No space left" in text
        or "StorageFull" in text
    ):
        return "no space left on the device (free some and resume)"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return first[:120]


def _config(step: int, meta: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "step": step, **meta}


def save_model(folder: str | Path, *, net: nn.Module, meta: dict[str, Any]) -> Path:
    """Write a model folder (``model.safetensors`` and ``config.json``, no training state)
    atomically; :func:`load_checkpoint` and :class:`~invblocks.model.Model` read it.
    ``meta`` holds at least ``task``, ``n_inputs`` and ``network`` (the JSON config)."""
    meta = dict(meta)
    step = int(meta.pop("step", 0))
    return _write_folder(Path(folder), net, _config(step, meta))


def save_checkpoint(
    run_dir: str | Path,
    *,
    step: int,
    net: nn.Module,
    meta: dict[str, Any],
    train_state: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step-XXXXXXXX`` atomically and point ``LATEST`` at it."""
    root = Path(run_dir) / "checkpoints"
    name = f"step-{step:08d}"
    final = _write_folder(root / name, net, _config(step, meta), train_state)
    with atomic_write(root / "LATEST") as latest:
        latest.write(name.encode())
    older = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name != name)
    for p in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder for ``path``: a run folder (its ``LATEST``), its ``checkpoints``
    folder, or a checkpoint folder itself. ``ValueError`` naming the path otherwise."""
    path = Path(path)
    if not path.exists():
        if os.path.lexists(path):
            raise ValueError(
                f"no checkpoint at {path}: it is a symbolic link to nothing (a loop, or its "
                "target is gone)"
            )
        raise ValueError(f"no checkpoint at {path}: it does not exist")
    for root in (path / "checkpoints", path):
        latest = root / "LATEST"
        if latest.is_file():
            named = latest.read_text().strip()
            if not named or named in (".", "..") or "/" in named or os.sep in named:
                raise ValueError(f"{latest} is damaged: it names {short(named)}, not a checkpoint")
            target = root / named
            if (target / "config.json").is_file():
                return target
            raise ValueError(f"{latest} names {target.name}, which is not a complete checkpoint")
    if (path / "config.json").is_file():
        return path
    raise ValueError(f"no checkpoint at {path}: expected a run folder or a checkpoint folder")


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """``(config, state_dict, folder)`` of the checkpoint at ``path`` (:func:`find_checkpoint`)."""
    folder = find_checkpoint(path)
    check_regular(folder / "config.json", "checkpoint config")
    try:
        text = (folder / "config.json").read_text()
        config = parse_json(text, "it")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise ValueError(f"corrupt checkpoint config {folder / 'config.json'}: {reason}") from None
    found = config.get("format") if isinstance(config, dict) else None
    if found not in FORMATS:
        raise ValueError(
            f"{folder / 'config.json'} is not an invblocks checkpoint this version reads: "
            f"its format is {found!r}, expected one of {', '.join(map(repr, FORMATS))}"
        )
    weights = check_regular(folder / "model.safetensors", "weights")
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError, ValueError) as err:
        raise ValueError(
            f"corrupt or truncated weights {folder / 'model.safetensors'}: {err}"
        ) from err
    missing = [k for k in ("task", "n_inputs", "network") if k not in config]
    if missing:
        raise ValueError(f"{folder / 'config.json'} is missing {', '.join(map(repr, missing))}")
    config, state = upgrade(config, state)
    return config, state, folder


def upgrade(
    config: dict[str, Any], state: dict[str, torch.Tensor]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A checkpoint's config and weights in the current format (unchanged when they are).

    Format 1 (invblocks 0.1.0) kept the network as the body alone, with the quantiser as
    its last node when it had one: that node becomes the channel; without one (WIN networks)
    the channel is the 8-bit quantiser that trains without quantising (``"identity"``), as
    those networks trained. Weights move under ``body.``.
    """
    if config.get("format") == FORMAT:
        return config, state
    network = config.get("network")
    if not isinstance(network, dict) or not isinstance(config.get("n_inputs"), int):
        raise ValueError("a format-1 checkpoint config needs 'network' and 'n_inputs'")
    body, channel = dict(network), {"type": "Quantizer", "args": {"train_mode": "identity"}}
    nodes = body.get("nodes")
    if body.get("type") == "Sequence" and isinstance(nodes, list) and nodes:
        if isinstance(nodes[-1], dict) and nodes[-1].get("type") == "Quantizer":
            body["nodes"], channel = nodes[:-1], nodes[-1]
    dims = body.get("dims") or list(body.get("inputs", {}).values())
    try:
        channels_in = int(dims[0][0])
    except (IndexError, KeyError, TypeError, ValueError):
        raise ValueError(f"a format-1 network config without input shapes: {network!r}") from None
    network = {
        "type": "RICNet",
        "body": body,
        "channel": channel,
        "image_channels": channels_in // config["n_inputs"],
        "channel_order": "rgb",
    }
    state = {f"body.{k}": v for k, v in state.items()}
    return {**config, "format": FORMAT, "network": network}, state


def load_train_state(folder: Path) -> dict[str, Any]:
    """The optimizer / RNG state of a checkpoint, loaded without unpickling code."""
    path = folder / "train_state.pt"
    try:
        return torch.load(
            check_regular(path, "training state"), weights_only=True, map_location="cpu"
        )
    except Exception as err:  # torch raises several types for corrupt files
        text = str(err)
        if "Weights only load failed" in text:
            reason = "it holds more than tensors and plain containers (refused; nothing ran)"
        else:
            reason = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        raise ValueError(f"corrupt training state {path}: {reason}") from None


def load_network(config: dict[str, Any], state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """Rebuild the network from its JSON config and load ``state`` strictly; ``ValueError``
    for weights that are not finite (a diverged or damaged model would embed garbage
    silently)."""
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise ValueError(
            f"{where}: {len(broken)} of its weight tensors hold NaN or infinite values "
            f"({broken[0]}, ...): the model is damaged or its training diverged"
        )
    if not isinstance(config.get("network"), dict):
        raise ValueError(f"{where}: its config.json describes no network")
    try:
        net = block_from_config(config["network"])
    except KeyError as err:
        raise ValueError(f"{where}: the network uses an unknown block type ({err})") from err
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: cannot rebuild the network: {err}") from err
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{where}: the weights do not match the network: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{where}: the weights do not match the network "
            f"(missing {result.missing_keys[:3]}..., unexpected {result.unexpected_keys[:3]}...)"
        )
    return net
