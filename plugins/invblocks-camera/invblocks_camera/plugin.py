"""The ``camera-raw`` task, registered through invblocks' plugin hook."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from invblocks import LossConfig, Task, TrainDefaults, hookimpl, presets
from invblocks.data import default_photos, div2k
from invblocks.ric import RICBatch, RICResult, charbonnier_loss, loss_term
from invblocks.sampling import SampleRequest

from .pipeline import render, unprocess


def sample_raw(request: SampleRequest) -> list[Tensor]:
    """A ``(4, crop, crop)`` packed RAW made from a ``2*crop`` sRGB photo crop (``crop=None``:
    the whole photo, trimmed to whole 4x4 blocks)."""
    photo = request.pick()  # a random photo in training, photo ``index`` in validation
    if request.crop is None:
        h, w = photo.shape[-2:]
        photo = photo[..., : h // 4 * 4, : w // 4 * 4]
        (region,) = request.crop_window([photo], None)
    else:  # a random (flipped) window in training, the centre in validation
        (region,) = request.crop_window([photo], 2 * request.crop)
    return [unprocess(region[None])[0]]


def rendered_srgb(x: Tensor, n: int) -> Tensor:
    """The reference: the sRGB photo the camera pipeline renders from the RAW."""
    return render(x)


@loss_term("rendered")
def rendered_restoration(result: RICResult, batch: RICBatch) -> Tensor:
    """The restored RAW must render to the reference photo too."""
    reference = batch.reference if batch.reference is not None else render(batch.inputs)
    return charbonnier_loss(render(result.restored.clamp(0, 1)), reference)


def display_raw(raw: Tensor) -> Tensor:
    """A packed RAW ``(4, H, W)`` shown as the sRGB photo it renders to."""
    return render(raw[None].clamp(0, 1))[0]


def _network(n: int, /, **kw: Any) -> Any:
    kw.setdefault("blocks", 4)
    return presets.win_naive(4 * n, 3, image_channels=4, **kw)


CAMERA_RAW = Task(
    name="camera-raw",
    description="camera RAW (packed RGGB) into the sRGB photo it renders to",
    inputs=1,
    default_inputs=1,
    image_channels=4,
    embed_channels=3,
    multiple=2,
    sample=sample_raw,
    default_data=default_photos,
    open_data=div2k,
    reference=rendered_srgb,
    network=_network,
    loss_terms=[rendered_restoration],
    losses=LossConfig(embedding=2.0, frequency=0.0, restoration=1.0, rendered=0.5),
    display=display_raw,
    train=TrainDefaults(crop=64, batch=2, optimizer="win"),
)


@hookimpl
def invblocks_register_tasks(registry: Any) -> None:
    from .isp import ISP

    registry.add_task(CAMERA_RAW)
    registry.add_task(ISP)


@hookimpl
def invblocks_register_presets(registry: Any) -> None:
    from .presets import invertible_isp

    registry.add_preset(invertible_isp)


@hookimpl
def invblocks_register_importers(registry: Any) -> None:
    from .published import convert_invisp

    registry.add_importer("invisp", convert_invisp)
