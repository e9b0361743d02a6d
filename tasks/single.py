"""Single-image tasks: invertible grayscale and invertible rescaling (x2, x4).

``grayscale`` (IICNet supp-gray-01): an RGB image into its ITU-R BT.601 gray version (a
1-channel embedding). ``rescaling-x2`` (IICNet supp-sr-01) and ``rescaling-x4`` (WIN x4): a
high-resolution image into its antialiased bicubic downscale (MATLAB ``imresize``, the way
DIV2K's LR images were made). Default data: the photographs scikit-image ships; user data: a
VOC2012 or DIV2K folder, or any folder of photographs.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import Tensor

from invblocks import LossConfig, Task, TrainDefaults, hookimpl, presets
from invblocks.data import default_photos
from invblocks.ops import bicubic_downscale, rgb_to_gray
from invblocks.sampling import SampleRequest

from ._common import cpu_recipe, open_photos


def sample_image(request: SampleRequest) -> list[Tensor]:
    """One photograph, cropped."""
    return request.crop_window([request.pick()])


def gray(x: Tensor, n: int) -> Tensor:
    """BT.601 luma of the image."""
    return rgb_to_gray(x)


def bicubic(x: Tensor, n: int, *, factor: int) -> Tensor:
    """The antialiased bicubic downscale of the image."""
    return bicubic_downscale(x, factor).clamp(0, 1)


def _check_preset(task: str, preset: str) -> None:
    if preset not in ("iicnet", "win", "win_naive"):
        raise ValueError(
            f"{task}: preset must be 'iicnet', 'win' or 'win_naive'; received {preset!r}"
        )


def _gray_net(n: int, /, preset: str = "iicnet", **kw: Any) -> Any:
    """IICNet (default), or WIN's decolourisation network (``preset="win"``/``"win_naive"``)."""
    _check_preset("grayscale", preset)
    if preset != "iicnet":
        return getattr(presets, preset)(3 * n, 1, **kw)
    kw.setdefault("blocks", 16)
    kw.setdefault("out_channels", 1)
    return presets.iicnet(n, **kw)


def _x2_net(n: int, /, preset: str = "iicnet", **kw: Any) -> Any:
    """IICNet (default), or WIN's x2 rescaling network (``preset="win"``/``"win_naive"``)."""
    _check_preset("rescaling-x2", preset)
    if preset != "iicnet":
        return getattr(presets, preset)(3 * n, 3, scale=2, **kw)
    kw.setdefault("blocks", 16)
    kw.setdefault("downscale", "squeeze")
    kw.setdefault("order", "hl")
    return presets.iicnet(n, **kw)


def _x4_net(n: int, /, preset: str = "win", **kw: Any) -> Any:
    """WIN's x4 rescaling network (default), WIN-Naive's, or IICNet with two downscales."""
    _check_preset("rescaling-x4", preset)
    if preset != "iicnet":
        return getattr(presets, preset)(3 * n, 3, scale=4, **kw)
    kw.setdefault("blocks", 16)
    kw.setdefault("downscale", "haar")
    kw.setdefault("order", "hl")
    kw.setdefault("levels", 2)
    return presets.iicnet(n, **kw)


GRAYSCALE = Task(
    name="grayscale",
    description="invertible grayscale: a colour image into its BT.601 gray version",
    inputs=1,
    default_inputs=1,
    embed_channels=1,
    sample=sample_image,
    default_data=default_photos,
    open_data=open_photos,
    reference=gray,
    network=_gray_net,
    train=cpu_recipe(network={"init": "trivial"}),
    reference_train=TrainDefaults(),
)

RESCALING_X2 = Task(
    name="rescaling-x2",
    description="invertible rescaling x2: an image into its bicubic half-size version",
    inputs=1,
    default_inputs=1,
    scale=2,
    multiple=2,
    sample=sample_image,
    default_data=default_photos,
    open_data=open_photos,
    reference=partial(bicubic, factor=2),
    network=_x2_net,
    train=cpu_recipe(network={"init": "trivial", "downscale": "haar"}),
    reference_train=TrainDefaults(),
)

RESCALING_X4 = Task(
    name="rescaling-x4",
    description="invertible rescaling x4 (WIN): an image into its bicubic quarter-size version",
    inputs=1,
    default_inputs=1,
    scale=4,
    multiple=4,
    min_crop=64,
    sample=sample_image,
    default_data=default_photos,
    open_data=open_photos,
    reference=partial(bicubic, factor=4),
    network=_x4_net,
    losses=LossConfig(embedding=2.0, frequency=0.0, restoration=1.0, gram_det=0.1, shift=1.0),
    train=cpu_recipe(network={"preset": "iicnet", "init": "trivial"}),
    reference_train=TrainDefaults(
        crop=128,
        batch=1,
        optimizer="win",
        channel={"type": "quantizer", "train_mode": "ste"},
    ),
)


@hookimpl
def invblocks_register_tasks(registry: Any) -> None:
    for task in (GRAYSCALE, RESCALING_X2, RESCALING_X4):
        registry.add_task(task)
