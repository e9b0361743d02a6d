"""The ``isp`` task: a camera RAW rendered into the sRGB photo its camera makes, through a
JPEG, and recovered from that JPEG (Invertible Image Signal Processing, CVPR 2021).

Data:

* default: the bundled photographs "unprocessed" by the fixed pipeline of
  :mod:`invblocks_camera.pipeline` into camera RGB, with the photograph as the reference,
* :func:`raw_pairs`: a folder of real RAW files paired with their sRGB renderings (the
  camera's JPEGs or the MIT-Adobe FiveK renderings), the reference taken from the pair.

Files: ``invblocks embed --model M photo.dng -o photo.jpg`` reads any RAW LibRaw reads
(:func:`invblocks_camera.raw.read_raw`); ``invblocks restore --model M photo.jpg -o
photo.dng`` writes a DNG with the source's levels, pattern, white balance, colour matrix and
orientation (they travel in the JPEG's metadata).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

from invblocks import LossConfig, Task, TrainDefaults
from invblocks.data import DataSplit, default_photos, list_images, split_items
from invblocks.ops import to_float
from invblocks.ric import FileFormat
from invblocks.ric.jpeg import jpeg_round_trip
from invblocks.sampling import Sample, SampleRequest

from .pipeline import CameraParams, render_rgb, unprocess_rgb
from .presets import JPEG_SETTING, fit_colour, invertible_isp
from .raw import GAMMA, RAW_SUFFIXES, RawInfo, dng_bytes, mosaic, read_raw

__all__ = [
    "ISP",
    "RawPair",
    "classical_inverse",
    "classical_rendering",
    "fit_start",
    "raw_pairs",
    "synthetic_raw",
]

_PARAMS = CameraParams()


def _balance(like: Tensor) -> Tensor:
    gains = like.new_tensor([_PARAMS.red_gain, 1.0, _PARAMS.blue_gain])
    return (gains / gains.max()).view(1, 3, 1, 1)


def synthetic_raw(srgb: Tensor) -> Tensor:
    """The network's RAW ``(B, 3, H, W)`` (white balance scaled to at most 1, gamma 1/2.2, as
    :mod:`invblocks_camera.raw` makes it from a real file) of the camera RGB the fixed
    pipeline unprocesses from an sRGB photo ``(B, 3, H, W)``."""
    return (unprocess_rgb(srgb, _PARAMS) * _balance(srgb)).clamp(0, 1) ** (1 / GAMMA)


def classical_rendering(raw: Tensor) -> Tensor:
    """The fixed pipeline's rendering of the network's RAW ``(B, 3, H, W)``."""
    cam = raw.clamp(0, 1) ** GAMMA / _balance(raw)
    return render_rgb(cam.clamp(0, 1), _PARAMS).clamp(0, 1)


def classical_inverse(reference: Tensor, n: int, size: tuple[int, int]) -> Tensor:
    """The task's trivial restoration, what a camera's JPEG gives without the model: the
    fixed pipeline's inverse of the photo ``(B, 3, H, W)`` saved as a JPEG at the paper's
    setting (quality 90, 4:2:2; Pillow's libjpeg)."""
    jpeg = jpeg_round_trip(
        reference.clamp(0, 1), JPEG_SETTING["quality"], JPEG_SETTING["subsampling"]
    )
    return synthetic_raw(jpeg)


@attrs.frozen
class RawPair:
    """A RAW file and its sRGB rendering (a data item of :func:`raw_pairs`)."""

    raw: Path
    rendering: Path


def _read_rendering(path: Path) -> Tensor:
    """A rendering ``(3, H, W)`` in ``[0, 1]``, turned upright as its EXIF orientation says
    (a camera's JPEG is stored as the sensor saw it)."""
    import numpy as np
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            upright = ImageOps.exif_transpose(im).convert("RGB")
            pixels = torch.from_numpy(np.asarray(upright).copy())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path.name}: cannot read it as an image ({err})") from None
    return to_float(pixels.permute(2, 0, 1))


_SLACK = 32
"""How many pixels a rendering may differ from its RAW's visible area on each side (cameras
crop a few border pixels); both are centre-cropped to their common size."""


@lru_cache(maxsize=8)
def _load_pair(pair: RawPair) -> tuple[Tensor, Tensor]:
    image, _ = read_raw(pair.raw)
    photo = _read_rendering(pair.rendering)
    (rh, rw), (ph, pw) = image.shape[-2:], photo.shape[-2:]
    if abs(rh - ph) > _SLACK or abs(rw - pw) > _SLACK:
        raise ValueError(
            f"{pair.rendering.name} is {pw}x{ph}, its RAW {pair.raw.name} {rw}x{rh}: a "
            f"rendering must have the RAW's size, within {_SLACK} pixels"
        )
    h, w = min(rh, ph), min(rw, pw)
    return _centre(image, h, w), _centre(photo, h, w)


def _centre(image: Tensor, h: int, w: int) -> Tensor:
    top, left = (image.shape[-2] - h) // 2, (image.shape[-1] - w) // 2
    return image[..., top : top + h, left : left + w]


def raw_pairs(root: str | Path) -> DataSplit:
    """RAW files paired with their renderings by name: ``a0001.dng`` and ``a0001.jpg`` (or
    ``.png``/``.tif``) side by side, or in folders ``raw/`` and ``rgb/``; ``train/`` and
    ``test/`` subfolders of that layout give the split (otherwise every tenth pair
    validates). Items are read when sampled (a few kept in memory)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, val = _pairs_in(root / "train"), _pairs_in(root / "test")
    else:
        train, val = split_items(_pairs_in(root))
    return DataSplit(train=train, val=val, description=f"RAW pairs at {root}")


def _pairs_in(folder: Path) -> list[RawPair]:
    raws_at = folder / "raw" if (folder / "raw").is_dir() else folder
    rgbs_at = folder / "rgb" if (folder / "rgb").is_dir() else folder
    raws = sorted(p for p in raws_at.iterdir() if p.suffix.lower() in RAW_SUFFIXES)
    try:
        renderings = {p.stem: p for p in list_images(rgbs_at)}
    except ValueError:
        renderings = {}
    pairs = [RawPair(p, renderings[p.stem]) for p in raws if p.stem in renderings]
    if not pairs:
        raise ValueError(
            f"no RAW files with renderings of the same name in {folder} (expected a0001.dng "
            "beside a0001.jpg, or raw/ and rgb/ folders)"
        )
    return pairs


def sample_isp(request: SampleRequest) -> Sample:
    """A RAW ``(3, crop, crop)`` and its rendering: from a photo (unprocessed by the fixed
    pipeline) or from a :class:`RawPair` (``crop=None``: the whole image, even sides)."""
    item = request.pick()
    if isinstance(item, RawPair):
        raw, photo = _load_pair(item)
    else:
        photo = to_float(item)
        raw = synthetic_raw(photo[None])[0]
    h, w = photo.shape[-2:]
    raw, photo = raw[..., : h // 2 * 2, : w // 2 * 2], photo[..., : h // 2 * 2, : w // 2 * 2]
    region_raw, region_photo = request.crop_window([raw, photo], request.crop)
    return Sample(images=[region_raw], reference=region_photo)


def _read_file(path: Path) -> tuple[list[Tensor], dict[str, Any]]:
    image, info = read_raw(path)
    return [image], {"raw": info.to_json()}


def _write_file(images: list[Tensor], info: Mapping[str, Any]) -> bytes:
    if "raw" not in info:
        raise ValueError(
            "the embedding carries no description of a RAW file (it was not made from one): "
            "restore it to PNGs instead"
        )
    described = RawInfo.from_json(info["raw"])
    image = images[0]
    return dng_bytes(mosaic(image, described), described)


def _network(n: int, /, **kw: Any) -> Any:
    return invertible_isp(**kw)


def fit_start(x: Tensor, reference: Tensor | None, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The task's data-fitted start (``Task.fit_network``): the affine colour map from the
    training RAW ``x`` ``(B, 3, crop, crop)`` to their renderings ``reference`` that fits best
    in least squares (:func:`~invblocks_camera.presets.fit_colour`), which the untrained
    network then renders. Nothing where the run chose another start or its own ``colour``
    (``--set network.colour=null``: the identity start)."""
    if reference is None or "colour" in settings or settings.get("start", "identity") != "identity":
        return {}
    return {"colour": fit_colour(x, reference)}


ISP = Task(
    name="isp",
    description="camera RAW into the sRGB photo its camera renders, through a JPEG, and back",
    inputs=1,
    default_inputs=1,
    image_channels=3,
    embed_channels=3,
    multiple=2,
    sample=sample_isp,
    default_data=default_photos,
    open_data=raw_pairs,
    reference=None,
    network=_network,
    baseline=classical_inverse,
    losses=LossConfig(embedding=4.0, frequency=0.0, restoration=4.0),
    train=TrainDefaults(crop=32, batch=2, lr=1e-3, optimizer="win", channel=JPEG_SETTING),
    recipes={
        "plain": TrainDefaults(crop=32, batch=2, lr=1e-3, optimizer="win", channel="quantizer"),
    },
    files=FileFormat(suffixes=RAW_SUFFIXES, read=_read_file, write=_write_file, suffix=".dng"),
    fit_network=fit_start,
)
"""The ``isp`` task (see the module). ``--set recipe=plain`` trains through lossless 8-bit
PNGs instead of the JPEG."""
