"""The ``compression`` task and its blocks, channel and preset, registered through the hooks.

A photograph ``(3, H, W)`` goes in; its "embedding" is the codec's latent, which the
``hyperprior`` channel writes as a bitstream (``.ibc``); restoring decodes it. The objective
is the authors': ``lambda * 255^2 * MSE + bits per pixel``, with ``lambda`` per quality
(:data:`~invblocks_compress.presets.LAMBDAS`). Recipes ``q1`` to ``q8`` choose the quality
(``--set recipe=q5``); the default is ``q3``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from pytorch_msssim import ms_ssim
from torch import Tensor

from invblocks import LossConfig, Task, TrainDefaults, hookimpl
from invblocks.data import default_photos, div2k
from invblocks.ric import ParamGroup, RICBatch, RICResult, loss_term
from invblocks.sampling import SampleRequest

from .blocks import AttentionPair, TwoSidedCoupling
from .channel import EntropyCoded
from .presets import LAMBDAS, QUALITIES, invcompress

__all__ = [
    "COMPRESSION",
    "ENTROPY_MODEL",
    "authors_recipe",
    "distortion",
    "model_rate",
    "rate",
    "recipe",
    "sample_photo",
]

MULTIPLE = 64
"""Image sides are multiples of this (the hyper-latent is 1/64 of the image)."""


def _bits_per_pixel(result: RICResult, batch: RICBatch) -> Tensor:
    aux = result.channel_aux
    pixels = batch.inputs.shape[0] * batch.inputs.shape[-2] * batch.inputs.shape[-1]
    bits = -(torch.log2(aux["likelihoods_y"]).sum() + torch.log2(aux["likelihoods_z"]).sum())
    return bits / pixels


@loss_term("rate")
def rate(result: RICResult, batch: RICBatch) -> Tensor:
    """Bits per pixel of the latent and hyper-latent under the channel's entropy model."""
    return _bits_per_pixel(result, batch)


@loss_term("model_rate")
def model_rate(result: RICResult, batch: RICBatch) -> Tensor:
    """The same bits per pixel, minimised by the entropy model's own optimiser
    (:data:`ENTROPY_MODEL`): in training the channel's parameters change the rate only."""
    return _bits_per_pixel(result, batch)


ENTROPY_MODEL = ParamGroup(name="entropy_model", params="channel.*", terms=("model_rate",), lr=1e-3)
"""The entropy model trains at 1e-3 (ten times the transforms' rate), so that it keeps up
with the latent it codes from the first steps."""


@loss_term("distortion")
def distortion(result: RICResult, batch: RICBatch) -> Tensor:
    """``255^2`` times the mean squared error of the restored image (weighted by lambda)."""
    return 255.0**2 * torch.mean((result.restored - batch.inputs) ** 2)


def sample_photo(request: SampleRequest) -> list[Tensor]:
    """A random crop of a photograph in training; in validation, the centre crop, or the whole
    photograph trimmed to multiples of 64 (``crop=None``)."""
    photo = request.pick()
    if request.crop is None:
        h, w = photo.shape[-2] // MULTIPLE * MULTIPLE, photo.shape[-1] // MULTIPLE * MULTIPLE
        if h == 0 or w == 0:
            raise ValueError(
                f"a photograph of {photo.shape[-2]}x{photo.shape[-1]} is smaller than 64x64"
            )
        top, left = (photo.shape[-2] - h) // 2, (photo.shape[-1] - w) // 2
        return [photo[..., top : top + h, left : left + w]]
    return request.crop_window([photo])


def msssim_metric(
    images: list[Tensor], restored: list[Tensor], embedding: Tensor, reference: Tensor | None
) -> dict[str, float]:
    """MS-SSIM (``pytorch-msssim``, 5 scales) of the restored photograph, for images whose
    sides exceed 160 pixels (its five scales need them)."""
    x, x_hat = images[0], restored[0]
    if min(x.shape[-2:]) <= 160:
        return {}
    value = ms_ssim(x_hat[None].float().clamp(0, 1), x[None].float(), data_range=1.0)
    return {"ms_ssim": float(value)}


def _network(n: int, /, **kw: Any) -> Any:
    if n != 1:
        raise ValueError(f"the compression task codes one photograph; received {n}")
    return invcompress(**kw)


def recipe(quality: int) -> TrainDefaults:
    """The training recipe of ``quality`` (1 to 8): its network and lambda; Adam at 3e-4
    with the authors' schedule for the transforms (rising over the first tenth of the run,
    while the entropy model fits at 1e-3; the authors' 1e-4 is for 600 epochs, and in a
    budget of CPU-minutes 3e-4 codes the held-out photographs in fewer bits: decision 96);
    one crop of 256 a step (a 4x4 hyper-latent, as the authors'; crops of 128 leave a 2x2
    one whose every value sees the padding); mixed quantisation (the channel's
    ``train_mode="mixed"``: the synthesis trains on the rounded latent it will decode, the
    rate on noise; decision 105); no enhancement module (``enhancement=False``: it works at
    full resolution and takes half a step's time, so a budget buys twice the steps, which
    are worth more; decision 106; ``--set network.enhancement=true`` for the authors'
    network)."""
    return TrainDefaults(
        crop=256,
        batch=1,
        lr=3e-4,
        optimizer="invcompress",
        warmup=0.1,
        channel={"train_mode": "mixed"},
        network={"quality": quality, "enhancement": False},
        losses={"distortion": LAMBDAS[quality]},
    )


def authors_recipe(quality: int = 3) -> TrainDefaults:
    """The authors' recipe at ``quality``: their network (with its enhancement module), Adam
    at 1e-4 divided by 10 at 75% and 92% of the run, no warm-up, eight crops of 256 a step,
    uniform noise for rounding (``recipe=reference``; their gradient clip is
    ``--set grad_clip=1.0``). For long runs; in a budget of CPU-minutes the quality recipes
    code in fewer bits (decisions 96, 105, 106)."""
    return attrs.evolve(
        recipe(quality),
        batch=8,
        lr=1e-4,
        warmup=0.0,
        channel={"train_mode": "noise"},
        network={"quality": quality, "enhancement": True},
    )


COMPRESSION = Task(
    name="compression",
    description="a photograph into an entropy-coded bitstream (Enhanced Invertible Encoding)",
    inputs=1,
    default_inputs=1,
    embed_channels=128,
    scale=16,
    multiple=MULTIPLE,
    min_crop=MULTIPLE,
    sample=sample_photo,
    default_data=default_photos,
    open_data=div2k,
    reference=None,
    network=_network,
    loss_terms=[rate, model_rate, distortion],
    losses=LossConfig(
        embedding=0.0,
        frequency=0.0,
        restoration=0.0,
        rate=1.0,
        model_rate=1.0,
        distortion=LAMBDAS[3],
    ),
    param_groups=[ENTROPY_MODEL],  # type: ignore[list-item]
    train=recipe(3),
    reference_train=authors_recipe(3),
    default_recipe="q3",
    recipes={f"q{q}": recipe(q) for q in QUALITIES if q != 3},
    metrics=[msssim_metric],
)


@hookimpl
def invblocks_register_blocks(registry: Any) -> None:
    registry.add_block(TwoSidedCoupling)
    registry.add_block(AttentionPair)


@hookimpl
def invblocks_register_channels(registry: Any) -> None:
    registry.add_channel(EntropyCoded)


@hookimpl
def invblocks_register_presets(registry: Any) -> None:
    registry.add_preset(invcompress)


@hookimpl
def invblocks_register_tasks(registry: Any) -> None:
    registry.add_task(COMPRESSION)


@hookimpl
def invblocks_register_importers(registry: Any) -> None:
    from .published import convert_invcompress

    registry.add_importer("invcompress", convert_invcompress)
