"""Helpers shared by the built-in task plugins (built on invblocks' public API only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invblocks import TrainDefaults
from invblocks.data import DataSplit, clip_folder, davis, div2k, photo_folder, voc2012

CPU_NETWORK = {"blocks": 4, "width": 16, "growth": 16}
"""The default recipe's network: 4 couplings, dense blocks of growth 16, relation width 16
(st-01's network has 10, 32 and 64: about 25 times the work per pixel)."""


SEVERAL_IMAGES = {"embedding": 4.0, "frequency": 0.004}
"""The default recipe's loss weights for tasks that embed several images in the channel
squeeze's mean: four times IICNet's embedding terms, so that the embedding reaches 30 dB
within minutes while the restoration stays above the trivial one (docs/benchmarks.md)."""


def cpu_recipe(network: dict[str, Any] | None = None, **changes: Any) -> TrainDefaults:
    """The built-in tasks' default recipe: a small network (:data:`CPU_NETWORK`, with
    ``network`` over it), 64-pixel crops in pairs, learning rate 5e-4, so that a few CPU
    minutes buy a model better than the trivial restoration (docs/benchmarks.md)."""
    fields: dict[str, Any] = {"crop": 64, "batch": 2, "lr": 5e-4}
    fields.update(changes)
    return TrainDefaults(network={**CPU_NETWORK, **(network or {})}, **fields)


def hidden_recipe() -> TrainDefaults:
    """The default recipe of the tasks whose other images start hidden in the residue of
    the reference's 8-bit image (hiding, mononizing, dual-view: ``hiding_levels=16``,
    :class:`~invblocks.blocks.residue.ResidueHiding`): the untrained network already hides
    and restores them, and a warm-up over the first 5% of the run keeps the first updates
    from throwing the restored reference off its start (docs/benchmarks.md)."""
    return cpu_recipe(
        network={"init": "trivial", "hiding_levels": 16}, losses=SEVERAL_IMAGES, warmup=0.05
    )


def open_clips(path: Path) -> DataSplit:
    """A user's clips: the DAVIS 2017 layout when ``path`` has it (``JPEGImages/``), else a
    folder of videos, GIFs and frame folders (:func:`invblocks.data.clip_folder`)."""
    return davis(path) if (Path(path) / "JPEGImages").is_dir() else clip_folder(path)


def open_photos(path: Path) -> DataSplit:
    """A user's photographs: the DIV2K layout (``DIV2K_train_HR/``) or the VOC 2012 layout
    (``JPEGImages/``) when ``path`` has one, else a folder of images
    (:func:`invblocks.data.photo_folder`)."""
    path = Path(path)
    if (path / "DIV2K_train_HR").is_dir():
        return div2k(path)
    if (path / "JPEGImages").is_dir():
        return voc2012(path)
    return photo_folder(path)
