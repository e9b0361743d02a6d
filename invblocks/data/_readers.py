"""Reading image files, frame folders, videos, GIFs and stereo pairs, kept as 8 bits."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence
from torch import Tensor

from ..io import read_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".webm")

_NOT_IMAGES = {"GIF", "BUFR", "GRIB", "HDF5", "MPEG", "WMF", "EPS"}
"""Pillow formats read otherwise (GIF: a clip) or not at all without more software (the
stubs, PostScript without Ghostscript)."""


def _image_suffixes() -> tuple[str, ...]:
    """The file endings of the still-image formats this Pillow opens (AVIF, WebP, JPEG 2000,
    QOI, ... as its wheel was built), PNG and JPEG first."""
    Image.init()
    found = {
        ext
        for ext, fmt in Image.registered_extensions().items()
        if fmt in Image.OPEN and fmt not in _NOT_IMAGES and ext not in VIDEO_SUFFIXES
    }
    first = (".png", ".jpg", ".jpeg")
    return (*first, *sorted(found - set(first)))


IMAGE_SUFFIXES = _image_suffixes()
"""File endings read as images: the still-image formats Pillow opens here."""


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
        raise ValueError(
            f"no images (PNG, JPEG, WebP, AVIF, TIFF, any file Pillow reads) in {folder}"
        )
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
