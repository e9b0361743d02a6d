"""What task samplers share: the request a sampler answers, picking items, aligned crops and
flips, common sizes, slots.

A task's sampler is ``f(request: SampleRequest) -> list[Tensor]``: the task's ``n`` input
images for sample ``request.index``. Built on :mod:`invblocks.ops`; the built-in tasks and
third-party plugins use the same helpers. Data sets keep 8-bit images; :func:`crop_window`
returns its crops as floats in ``[0, 1]`` (:func:`invblocks.ops.to_float`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from .ops import center_crop, random_flips, random_window, to_float

__all__ = [
    "Sample",
    "SampleRequest",
    "common_size",
    "crop_window",
    "large_enough",
    "pick",
    "slot",
    "slot_reference",
]


def _image_list(images: Iterable[Tensor]) -> list[Tensor]:
    return list(images)


@attrs.frozen
class Sample:
    """A sampler's answer for paired data: the images and the reference that goes with them
    (a RAW and the photo its camera rendered), where the reference is in the data rather
    than a function of the images.

    Arguments:
        images: The sample's ``n`` images ``(C, H, W)`` in natural order.
        reference: What the embedding must resemble ``(c_e, h, w)``, or ``None``.
    """

    images: list[Tensor] = attrs.field(converter=_image_list)
    reference: Tensor | None = None


@attrs.frozen(kw_only=True)
class SampleRequest:
    """What a task's sampler is asked for: the ``n_inputs`` images of sample ``index``.

    Attributes:
        items: The split's data items (images ``(C, H, W)``, clips ``(T, C, H, W)``, pairs or
            layers, as the task's reader keeps them).
        index: The sample's number; validation samples are deterministic in it.
        n_inputs: How many images the sample holds (``n``).
        crop: The side of the square crop, or ``None`` for whole images (evaluation).
        generator: The sample's own random source (seeded from the run's seed and ``index``).
        train: Random item, crop and flips when true; item ``index``, centred crop when false.
        options: The task's sampling settings (``Task.sampling``, with a
            recipe's or a run's over them; e.g. a video task's ``frame_step``).

    The methods are the common steps, drawn from :attr:`generator`::

        def sample_pair(request):
            left, right = request.pick()
            return request.crop_window([left, right], flip=False)
    """

    items: Sequence[Any]
    index: int
    n_inputs: int
    crop: int | None
    generator: torch.Generator
    train: bool
    options: Mapping[str, Any] = attrs.field(factory=dict)

    def pick(self, items: Sequence[Any] | None = None) -> Any:
        """One of ``items`` (default :attr:`items`): see :func:`pick`."""
        return pick(self.items if items is None else items, self.index, self.generator, self.train)

    def crop_window(
        self, images: Sequence[Tensor], size: int | None = -1, *, flip: bool = True
    ) -> list[Tensor]:
        """The same crop of aligned images, of side :attr:`crop` unless ``size`` is given
        (``None``: whole images): see :func:`crop_window`."""
        side = self.crop if size == -1 else size
        return crop_window(images, side, self.generator, self.train, flip=flip)

    def randint(self, high: int) -> int:
        """A number in ``[0, high)`` from :attr:`generator`."""
        return int(torch.randint(0, high, (1,), generator=self.generator))


def slot(x: Tensor, index: int = 0, channels: int = 3) -> Tensor:
    """Slot ``index`` of a stacked batch ``(B, n*channels, H, W)``: ``(B, channels, H, W)``."""
    return x[:, index * channels : (index + 1) * channels]


def slot_reference(index: int = 0, channels: int = 3) -> Callable[[Tensor, int], Tensor]:
    """A task's ``reference`` that is one of its inputs: ``f(x, n) = slot(x, index, channels)``
    (the middle frame, the left view, the cover, the composite)."""

    def reference(x: Tensor, n: int) -> Tensor:
        return slot(x, index, channels)

    reference.__doc__ = f"Slot {index} ({channels} channels) of the stacked inputs."
    return reference


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
        i, j = random_window(h, w, size, generator)  # one window for all the images
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
