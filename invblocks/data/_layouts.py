"""The folder layouts of the papers' data sets (DAVIS, Flickr1024, DIV2K, VOC, ...)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ._readers import _pair, _read8, list_images, read_clip
from ._source import DataSplit, split_items


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f"{what}: expected {path}")
    return path


def davis(
    root: str | Path, *, resolution: str = "480p", max_frames: int | None = None
) -> DataSplit:
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
    return DataSplit(
        train=load(train_names), val=load(val_names), description=f"DAVIS 2017 at {root}"
    )


def flickr1024(root: str | Path) -> DataSplit:
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
    return DataSplit(
        train=train,
        val=pairs(_require(val_dir, "Flickr1024 layout")),
        description=f"Flickr1024 at {root}",
    )


def div2k(root: str | Path) -> DataSplit:
    """DIV2K: ``DIV2K_train_HR/0001.png`` ... and ``DIV2K_valid_HR/``. Items are HR images
    (low-resolution references are computed with :func:`invblocks.ops.bicubic_downscale`)."""
    root = Path(root)
    train = [_read8(p) for p in list_images(_require(root / "DIV2K_train_HR", "DIV2K layout"))]
    val = [_read8(p) for p in list_images(_require(root / "DIV2K_valid_HR", "DIV2K layout"))]
    return DataSplit(train=train, val=val, description=f"DIV2K at {root}")


def voc2012(root: str | Path, *, min_side: int = 144) -> DataSplit:
    """PASCAL VOC 2012: ``JPEGImages/*.jpg``; images at least ``min_side`` on both sides, the
    first 13,758 for training and the rest for validation (IICNet's grayscale split, or a
    deterministic 90/10 split of fewer files)."""
    files = list_images(_require(Path(root) / "JPEGImages", "VOC2012 layout"))
    images = _large_enough(files, min_side, f"{root} (VOC 2012 layout)")
    if len(images) > 13_758:
        train, val = images[:13_758], images[13_758:]
    else:
        train, val = split_items(images)
    return DataSplit(train=train, val=val, description=f"VOC2012 at {root}")


def flickr2w(root: str | Path, *, min_side: int = 576) -> DataSplit:
    """Flickr 2W (image hiding): a folder of photographs at least ``min_side`` on both sides;
    70/10/20 split in sorted order (train / validation; the last 20% is the test set)."""
    files = list_images(root)
    images = _large_enough(files, min_side, f"{root} (Flickr 2W layout)")
    n = len(images)
    return DataSplit(
        train=images[: int(0.7 * n)] or images,
        val=images[int(0.7 * n) : int(0.8 * n)] or images,
        description=f"Flickr 2W at {root}",
    )


def _large_enough(files: list[Path], min_side: int, where: str) -> list[Tensor]:
    """The images of ``files`` at least ``min_side`` on both sides; ``ValueError`` saying how
    many were dropped and why when none is left."""
    images = [img for img in map(_read8, files) if min(img.shape[-2:]) >= min_side]
    if not images:
        raise ValueError(
            f"{where}: all {len(files)} images are smaller than the layout's minimum of "
            f"{min_side} pixels on both sides, so none is used"
        )
    return images


def adobe_matting(root: str | Path) -> DataSplit:
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
    return DataSplit(train=train, val=val, description=f"Adobe matting layers at {root}")
