"""One evaluation for every caller: validation during training, ``invblocks eval``,
:func:`invblocks.model.evaluate_images` and the benchmarks.

Each sample goes through the network as a user's files go: the body's embedding through a
channel's deployment face (``encode``, then ``decode``: the 8-bit PNG, the JPEG, the
bitstream), then the inverse. The metrics are the papers' (PSNR and SSIM on 8-bit values,
:mod:`invblocks.metrics`), beside the task's trivial baseline, with what the channel adds
(bits per pixel of its files) and what the task adds (``Task.metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..io import write_png
from ..metrics import PSNR_CAP, Space, mean_psnr, psnr, ssim
from .channel import Channel
from .network import RICNet
from .task import Task, default_display

__all__ = ["EvalSample", "evaluate"]

EvalSample = Tensor | tuple[Tensor, Tensor]
"""The stacked images ``(n*C, H, W)`` of a sample in slot order, or the pair ``(images,
reference)`` of paired data, as :class:`~invblocks.data.TaskDataset` gives them."""


@torch.no_grad()
def evaluate(
    task: Task,
    net: RICNet,
    samples: Iterable[EvalSample],
    n: int,
    out: Path | None = None,
    tag: str = "",
    *,
    channel: Channel | None = None,
    pad: Callable[[Tensor], Tensor] | None = None,
    with_ssim: bool = True,
    space: Space = "rgb",
    shave: int = 0,
    forward: Callable[[Tensor], Tensor] | None = None,
    inverse: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, float]:
    """The metrics of ``net`` on ``samples``, in eval mode, as means over the samples.

    Arguments:
        task: The task (reference, baseline, slots, its own metrics).
        net: The network; run where its parameters are (samples are moved there).
        samples: Stacked samples ``(n*C, H, W)`` or ``(x, reference)`` pairs.
        n: Images per sample.
        out: Write each sample's images here (``<tag>sample<k>/``: embedding, reference,
            inputs, restored, errors x10; inputs through ``Task.display``).
        tag: Prefix of the sample folders.
        channel: Send the embedding through this channel's deployment face instead of the
            network's own (a plain model through a real JPEG: the JPEG channel); the
            ``received_*`` metrics are then what arrives, and ``received_baseline_*`` the
            trivial restoration from it.
        pad: ``f(x) -> (1, n*C, H', W')``: how a whole image is padded to the network's
            multiple (:meth:`invblocks.model.Model.pad`); restorations are cropped back.
        with_ssim: Compute SSIM (NaN for images under 11x11 pixels).
        space: ``"rgb"`` (the papers of IICNet and WIN's hiding) or ``"y"``: PSNR and SSIM
            of the BT.601 luma, as the rescaling papers report (:mod:`invblocks.metrics`).
        shave: Pixels cut from every border before the metrics (the rescaling papers shave
            the scale factor).
        forward, inverse: How the body's embedding ``(1, C_e, h, w)`` is computed from a
            padded sample and the inputs restored from a received embedding (default: the
            network's own passes; :class:`~invblocks.model.Model` passes its tiled ones).

    Returns:
        The means over the samples of ``embedding_psnr``/``_ssim`` (the embedding the network's
        own channel delivers, against the reference), ``received_psnr`` (what ``channel``
        delivers), ``restored_psnr``/``_ssim`` (over the images), ``restored_psnr_<i>``
        (image ``i``, natural order), ``restored_psnr_no_ref`` (without the image the
        reference is made from), the same for ``baseline_*`` (the task's trivial
        restoration from the reference) and, with ``channel``, ``received_baseline_*``;
        the channel's metrics (``bpp``, ``file_bytes`` of its files) and the task's.
        Tasks without a reference have no embedding or baseline metrics. Identical images
        count as :data:`~invblocks.metrics.PSNR_CAP` dB.
    """
    was_training = net.training
    net.eval()
    first = next(net.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    rows: dict[str, list[float]] = {}
    own = net.channel
    send = channel or own
    reference_slot = task.order(n)[0]

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    def ssim_or_nan(a: Tensor, b: Tensor) -> float:
        if not with_ssim or min(b.shape[-2:]) - 2 * shave < 11:
            return float("nan")
        return ssim(a, b, shave=shave, space=space)

    def measure(a: Tensor, b: Tensor) -> float:
        return min(psnr(a, b, shave=shave, space=space), PSNR_CAP)

    def compare(name: str, outs: list[Tensor], images: list[Tensor]) -> None:
        per = [measure(o, im) for o, im in zip(outs, images, strict=True)]
        add(f"{name}_psnr", sum(per) / n)
        add(f"{name}_ssim", sum(map(ssim_or_nan, outs, images)) / n)
        for i, value in enumerate(per):
            add(f"{name}_psnr_{i}", value)
        if n > 1:
            others = [v for i, v in enumerate(per) if i != reference_slot]
            add(f"{name}_psnr_no_ref", sum(others) / len(others))

    try:
        for k, sample in enumerate(samples):
            x, given = sample if isinstance(sample, tuple | list) else (sample, None)
            h, w = x.shape[-2:]
            xp = (pad(x) if pad is not None else x[None]).to(device)
            if forward is not None:
                e = forward(xp)
            else:
                (e,), _ = net.body([net._in(xp)])
                e = net._out_embedding(e)
            own_payloads = own.encode(e)
            embedding = own.decode(own_payloads, dtype=e.dtype).to(device)
            payloads = send.encode(e) if send is not own else None
            received = embedding if payloads is None else send.decode(payloads, dtype=e.dtype)
            back = inverse(received) if inverse is not None else net.restore(received.to(device))
            restored = back[0, :, :h, :w].clamp(0, 1).cpu()
            images, backs = task.unstack(x, n), task.unstack(restored, n)
            reference = task.reference_of(xp.cpu(), n, None if given is None else given[None])
            seen, got = embedding[0].cpu(), received[0].cpu()
            if given is not None:  # a paired reference of the original size: compare that
                rh, rw = given.shape[-2:]
                seen, got = seen[..., :rh, :rw], got[..., :rh, :rw]
            if reference is not None:
                ref = reference[0].clamp(0, 1)
                add("embedding_psnr", measure(seen, ref))
                add("embedding_ssim", ssim_or_nan(seen, ref))
                add("received_psnr", measure(got, ref))
            compare("restored", backs, images)
            if reference is not None:
                size = (int(xp.shape[-2]), int(xp.shape[-1]))
                try:
                    trivial = task.restoration_from(reference, n, size)
                except ValueError:  # no trivial restoration from this reference
                    trivial = None
                if trivial is not None:
                    compare("baseline", task.unstack(trivial[0, :, :h, :w].clamp(0, 1), n), images)
                if trivial is not None and payloads is not None:
                    from_received = task.restoration_from(received.cpu().clamp(0, 1), n, size)
                    crop = from_received[0, :, :h, :w].clamp(0, 1)
                    compare("received_baseline", task.unstack(crop, n), images)
            sent = payloads if payloads is not None else own_payloads
            meta = {"format": 1, "task": task.name, "n_inputs": n, "height": h, "width": w}
            for key, value in _channel_metrics(send, sent[0], meta, h * w).items():
                add(key, value)
            for metric in task.metrics:
                ref0 = reference[0] if reference is not None else None
                for key, value in metric(images, backs, got, ref0).items():
                    add(key, float(value))
            if out is not None:
                ref_image = reference[0].clamp(0, 1) if reference is not None else None
                _write_sample(task, out / f"{tag}sample{k}", got, ref_image, images, backs)
    finally:
        net.train(was_training)
    return {k: mean_psnr(v) if "psnr" in k else sum(v) / len(v) for k, v in rows.items()}


def _channel_metrics(
    channel: Channel, payload: Any, meta: dict[str, Any], pixels: int
) -> dict[str, float]:
    """The channel's metrics of one payload, with the size of the file it writes (none for
    a payload that has no file form, e.g. a 16-bit quantiser's)."""
    try:
        size = len(channel.dumps(payload, meta))
    except (ValueError, TypeError, NotImplementedError):
        return {}
    return {k: float(v) for k, v in channel.metrics(payload, pixels, size).items()}


def _write_sample(
    task: Task,
    folder: Path,
    embedding: Tensor,
    reference: Tensor | None,
    images: list[Tensor],
    backs: list[Tensor],
) -> None:
    """One sample's images as PNGs: the embedding (and reference, and their difference x10
    where it is an image), each input and its restoration, and their difference x10."""
    if embedding.shape[0] in (1, 3):
        write_png(default_display(embedding.clamp(0, 1)), folder / "embedding.png")
        if reference is not None and reference.shape == embedding.shape:
            write_png(default_display(reference), folder / "reference.png")
            error = ((embedding - reference).abs() * 10).clamp(0, 1)
            write_png(default_display(error), folder / "embedding_error_x10.png")
    for i, (o, b) in enumerate(zip(images, backs, strict=True)):
        o_shown, b_shown = task.display(o), task.display(b)
        write_png(o_shown, folder / f"input{i}.png")
        write_png(b_shown, folder / f"restored{i}.png")
        write_png(
            ((b_shown - o_shown).abs() * 10).clamp(0, 1), folder / f"restored{i}_error_x10.png"
        )
