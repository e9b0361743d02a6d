"""Dual-view embedding (IICNet dual-01/02/03): a normal view and an xs zoomed view into the
normal view.

A view of ``crop * s`` pixels is taken from a photograph; slot 0 is the whole view downscaled
by ``s`` (antialiased bicubic), slot 1 its centre ``crop`` pixels at full resolution (the zoomed
view, same pixel size). The reference is slot 0. Both come from real photographs, as in the
reference's DIV2K set-up; the default photographs are those scikit-image ships.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from invblocks import Task, TrainDefaults, hookimpl, presets
from invblocks.data import default_photos
from invblocks.ops import bicubic_downscale, center_crop
from invblocks.sampling import SampleRequest, large_enough, slot_reference

from ._common import hidden_recipe, open_photos


def sample_views(request: SampleRequest, *, zoom: int) -> list[Tensor]:
    """The normal view (the photograph downscaled ``zoom`` times) and the zoomed view (its
    centre at full resolution)."""
    crop = request.crop
    side = None if crop is None else crop * zoom
    photo = request.pick(large_enough(request.items, side, f"dual-view-x{zoom}"))
    if crop is None:  # the whole photograph, trimmed to whole LR pixels
        h, w = photo.shape[-2:]
        photo = photo[..., : h // zoom * zoom, : w // zoom * zoom]
    (view,) = request.crop_window([photo], side)
    normal = bicubic_downscale(view[None], zoom)[0].clamp(0, 1)
    return [normal, center_crop(view, (int(normal.shape[-2]), int(normal.shape[-1])))]


def zoomed_baseline(reference: Tensor, n: int, size: tuple[int, int], *, zoom: int) -> Tensor:
    """The trivial restoration: the normal view as it is, and its centre, a ``1/zoom`` of its
    side, upscaled ``zoom`` times (bicubic) as the zoomed view."""
    h, w = reference.shape[-2:]
    centre = center_crop(reference, (max(1, h // zoom), max(1, w // zoom)))
    up = F.interpolate(centre, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return torch.cat([reference, up], dim=1)


normal_view = slot_reference(0)  # Slot 0, the normal (downscaled) view.


def _network(n: int, /, **kw: Any) -> Any:
    return presets.iicnet(n, **kw)


def _task(zoom: int) -> Task:
    return Task(
        name=f"dual-view-x{zoom}",
        description=f"dual-view embedding: a normal view and its x{zoom} zoomed centre",
        inputs=2,
        default_inputs=2,
        sample=partial(sample_views, zoom=zoom),
        default_data=default_photos,
        open_data=open_photos,
        reference=normal_view,
        baseline=partial(zoomed_baseline, zoom=zoom),
        network=_network,
        # the zoomed view starts hidden in the residue of the normal view's 8-bit image
        train=hidden_recipe(),
        reference_train=TrainDefaults(crop=144 if zoom < 8 else 96),
    )


TASKS = [_task(2), _task(4), _task(8)]


@hookimpl
def invblocks_register_tasks(registry: Any) -> None:
    for task in TASKS:
        registry.add_task(task)
