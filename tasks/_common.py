"""Helpers shared by the built-in task plugins (built on invblocks' public API only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invblocks import TrainDefaults
from invblocks.data import Source, clip_folder, davis, div2k, photo_folder, voc2012
from invblocks.ops import center_crop, random_flips, to_float

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


def open_clips(path: Path) -> Source:
    """A user's clips: the DAVIS 2017 layout when ``path`` has it (``JPEGImages/``), else a
    folder of videos, GIFs and frame folders (:func:`invblocks.data.clip_folder`)."""
    return davis(path) if (Path(path) / "JPEGImages").is_dir() else clip_folder(path)


def open_photos(path: Path) -> Source:
    """A user's photographs: the DIV2K layout (``DIV2K_train_HR/``) or the VOC 2012 layout
    (``JPEGImages/``) when ``path`` has one, else a folder of images
    (:func:`invblocks.data.photo_folder`)."""
    path = Path(path)
    if (path / "DIV2K_train_HR").is_dir():
        return div2k(path)
    if (path / "JPEGImages").is_dir():
        return voc2012(path)
    return photo_folder(path)


def pick(items: Sequence[Any], index: int, generator: torch.Generator, train: bool) -> Any:
    """A random item in training, item ``index`` (cyclically) in validation."""
    if train:
        return items[int(torch.randint(0, len(items), (1,), generator=generator))]
    return items[index % len(items)]


def common_size(images: Sequence[Tensor]) -> list[Tensor]:
    """Images of different photographs (not aligned) centre-cropped to the size they all
    have: for full-image samples of several unrelated images (hiding, derived layers)."""
    h = min(im.shape[-2] for im in images)
    w = min(im.shape[-1] for im in images)
    return [center_crop(im, (h, w)) for im in images]


def crop_window(
    images: Sequence[Tensor],
    size: int | None,
    generator: torch.Generator,
    train: bool,
    *,
    flip: bool = True,
) -> list[Tensor]:
    """The same ``size`` crop of aligned images (random in training, centred otherwise) and,
    in training with ``flip``, the same random flips; as floats in ``[0, 1]`` (data sets keep
    ``uint8``, :func:`invblocks.ops.to_float`). ``size=None``: the whole images (full-image
    evaluation)."""
    h, w = images[0].shape[-2:]
    if any(im.shape[-2:] != (h, w) for im in images):
        sizes = [tuple(im.shape[-2:]) for im in images]
        raise ValueError(f"aligned images must share one size; received {sizes}")
    if size is None:
        return [to_float(im) if im.dtype == torch.uint8 else im.clone() for im in images]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from an image of {h}x{w}")
    if train:
        i = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        j = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        crops = [im[..., i : i + size, j : j + size] for im in images]
        if flip:  # one draw for all: the images stay aligned
            crops = random_flips(crops, generator)
    else:
        crops = [center_crop(im, size) for im in images]
    return [to_float(c) if c.dtype == torch.uint8 else c.clone() for c in crops]


def large_enough(items: Sequence[Tensor], size: int | None, task: str) -> list[Tensor]:
    """The images at least ``size`` on both sides; ``ValueError`` naming the task if none."""
    if size is None:
        return list(items)
    kept = [im for im in items if min(im.shape[-2:]) >= size]
    if not kept:
        raise ValueError(f"task {task!r}: no image is at least {size}x{size} pixels")
    return kept
