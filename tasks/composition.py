"""Composition / decomposition (IICNet adobe-01, real-01): a composite, its background and
its foreground layer into the composite.

Slots: ``[composite; background; foreground * 1(alpha > 0)]``; the reference is the composite
``alpha * fg + (1 - alpha) * bg``. With two inputs (IICNet real-01: a frame and its
background plate), ``[composite; background]``.

Default data are *derived*: real matting layers cannot be installed offline, so the foreground
and background are crops of two different photographs and alpha a random soft-edged ellipse.
User data: an Adobe-matting-style folder with ``fg/``, ``alpha/``, ``bg/``
(:func:`invblocks.data.adobe_matting`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from invblocks import Task, TrainDefaults, hookimpl, presets
from invblocks.data import adobe_matting, default_photos
from invblocks.sampling import SampleRequest, common_size, slot_reference

from ._common import SEVERAL_IMAGES, cpu_recipe


def soft_ellipse(size: int | Sequence[int], generator: torch.Generator, train: bool) -> Tensor:
    """An alpha matte ``(1, H, W)`` (``size``: ``H = W`` or ``(H, W)``): an ellipse with a soft
    edge (random in training)."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    r = torch.rand(5, generator=generator) if train else torch.tensor([0.5, 0.5, 0.6, 0.6, 0.5])
    cy, cx = 0.3 + 0.4 * r[0], 0.3 + 0.4 * r[1]
    ry, rx = 0.2 + 0.3 * r[2], 0.2 + 0.3 * r[3]
    edge = 0.02 + 0.08 * r[4]
    ys = torch.linspace(0, 1, h)[:, None]
    xs = torch.linspace(0, 1, w)[None, :]
    d = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2
    return ((1 - d) / edge).clamp(0, 1)[None]


def sample_layers(request: SampleRequest) -> list[Tensor]:
    """Composite, background and foreground of one matting item, or of two photographs and a
    synthetic matte."""
    items, crop = request.items, request.crop
    i = request.randint(len(items)) if request.train else request.index % len(items)
    item = items[i]
    if isinstance(item, tuple):  # (fg, alpha, bg) from a matting folder
        fg_image, alpha_image, bg_image = item
        if crop is None:  # full images: the size all three have
            fg_image, alpha_image, bg_image = common_size([fg_image, alpha_image, bg_image])
        fg, alpha = request.crop_window([fg_image, alpha_image])
        bg = request.crop_window([bg_image])[0]  # another photograph
    else:  # derived: two different photographs and a synthetic matte
        other = items[(i + 1) % len(items)]
        if crop is None:  # full images: the size both have
            item, other = common_size([item, other])
        fg = request.crop_window([item])[0]
        bg = request.crop_window([other])[0]
        alpha = soft_ellipse(fg.shape[-2:], request.generator, request.train)
    composite = alpha * fg + (1 - alpha) * bg
    return [composite, bg, fg * (alpha > 0)][: request.n_inputs]


composite = slot_reference(0)  # Slot 0, the composite.


def _network(n: int, /, **kw: Any) -> Any:
    return presets.iicnet(n, **kw)


COMPOSITION = Task(
    name="composition",
    description="composition/decomposition: composite, background and foreground layers",
    inputs=(2, 3),
    default_inputs=3,
    sample=sample_layers,
    default_data=default_photos,
    open_data=adobe_matting,
    reference=composite,
    network=_network,
    train=cpu_recipe(losses=SEVERAL_IMAGES),
    reference_train=TrainDefaults(crop=256, batch=1),
)


@hookimpl
def invblocks_register_tasks(registry: Any) -> None:
    registry.add_task(COMPOSITION)
