"""A user's own folders of clips or photographs, split deterministically."""

from __future__ import annotations

from pathlib import Path

from ._readers import IMAGE_SUFFIXES, VIDEO_SUFFIXES, _natural_key, _read8, list_images, read_clip
from ._source import DataSplit, split_items


# ---------------------------------------------------------------- a user's own folders
def clip_folder(
    root: str | Path, *, max_frames: int | None = 150, max_side: int | None = 854
) -> DataSplit:
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
    return DataSplit(train=train, val=val, description=f"{len(clips)} clips in {root}")


def photo_folder(root: str | Path) -> DataSplit:
    """A folder of photographs: every image file in ``root`` (not deeper), ``(3, H, W)``, in
    natural order; deterministic 90/10 split (:func:`split_items`; one photo serves both).
    Raises ``ValueError`` naming the folder when it holds no image."""
    images = [_read8(p) for p in list_images(root)]
    train, val = split_items(images)
    return DataSplit(train=train, val=val, description=f"{len(images)} photographs in {root}")


# ---------------------------------------------------------------- dataset folder layouts
