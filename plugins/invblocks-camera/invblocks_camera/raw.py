"""Camera RAW files: read through LibRaw (``rawpy``), written back as DNG (``tifffile``).

The network's RAW is the sensor's data made explicit, step by step:

1. the black level of each Bayer position subtracted and the result divided by
   ``white - black`` (values in ``[0, 1]``),
2. demosaiced by LibRaw (AHD) in the camera's own colour space, no white balance, linear,
3. the camera's white-balance gains scaled so that the largest is 1 (nothing clips),
4. the image turned upright as the file's orientation says,
5. gamma ``1/2.2``,

giving ``(3, H, W)`` in ``[0, 1]``. :func:`mosaic` undoes 5 to 1 (a demosaiced image is
sampled back at each position's colour) and :func:`dng_bytes` writes the result as a DNG
that keeps the source's pattern, levels, white balance, colour matrix and orientation.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "GAMMA",
    "RAW_SUFFIXES",
    "RawInfo",
    "develop",
    "dng_bytes",
    "mosaic",
    "read_raw",
    "undevelop",
]

GAMMA = 2.2
"""The network's RAW is gamma-encoded with ``1/GAMMA``."""
RAW_SUFFIXES = (
    ".dng", ".nef", ".nrw", ".cr2", ".crw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
    ".pef", ".srw", ".erf", ".kdc", ".dcr", ".mos", ".mrw", ".3fr", ".fff", ".iiq", ".rwl",
)  # fmt: skip
"""Endings of the RAW formats LibRaw reads (any other file is read as an image)."""

_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
     [0.0193339, 0.1191920, 0.9503041]]
)  # fmt: skip
_TURNS = {0: 0, 3: 2, 5: 1, 6: 3}
"""LibRaw's orientation codes -> quarter turns counter-clockwise that make the image upright."""
_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
"""LibRaw's orientation codes -> the TIFF Orientation tag."""
_CFA_CODES = {"R": 0, "G": 1, "B": 2}


@attrs.frozen
class RawInfo:
    """What writing a RAW back needs, kept from the source file (a JSON object by
    :meth:`to_json`; it travels in the embedding's metadata).

    Attributes:
        pattern: The 2x2 colour filter pattern, row by row (``"RGGB"``, ``"BGGR"``, ...).
        black: The black level at each of the 2x2 positions, row by row.
        white: The white level.
        gains: The camera's white-balance gains ``(R, G, B)`` as shot.
        xyz_to_camera: The colour matrix from XYZ (D65) to camera RGB, row by row (DNG's
            ``ColorMatrix1``).
        flip: LibRaw's orientation code: 0, 3 (180 degrees), 5 or 6 (quarter turns); a
            mirrored orientation (rare) is read as 0, unmirrored.
        height: Sensor rows (before turning upright).
        width: Sensor columns.
        make: The camera's maker as the file names it (TIFF-based formats), else ``""``.
        model: The camera's model, likewise.
    """

    pattern: str
    black: tuple[float, float, float, float]
    white: float
    gains: tuple[float, float, float]
    xyz_to_camera: tuple[float, ...]
    flip: int = 0
    height: int = 0
    width: int = 0
    make: str = ""
    model: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON object of the fields."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RawInfo:
        """The fields back from :meth:`to_json`; ``ValueError`` naming what is wrong."""
        try:
            info = cls(
                pattern=str(data["pattern"]),
                black=tuple(float(b) for b in data["black"]),  # type: ignore[arg-type]
                white=float(data["white"]),
                gains=tuple(float(g) for g in data["gains"]),  # type: ignore[arg-type]
                xyz_to_camera=tuple(float(v) for v in data["xyz_to_camera"]),
                flip=int(data.get("flip", 0)),
                height=int(data.get("height", 0)),
                width=int(data.get("width", 0)),
                make=str(data.get("make", ""))[:64],
                model=str(data.get("model", ""))[:64],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"the RAW's description is damaged ({err})") from None
        numbers = (*info.black, info.white, *info.gains, *info.xyz_to_camera)
        if (
            sorted(info.pattern) != ["B", "G", "G", "R"]
            or len(info.black) != 4
            or len(info.gains) != 3
            or len(info.xyz_to_camera) != 9
            or info.flip not in _TURNS
            or not all(math.isfinite(v) for v in numbers)
            or not 0 <= min(info.black) <= max(info.black) < info.white <= 65535
            or not 0 < min(info.gains) <= max(info.gains) < 1e6
            or not max(abs(v) for v in info.xyz_to_camera) < 1e6
            or not all(c.isascii() and c.isprintable() for c in info.make + info.model)
        ):
            raise ValueError(
                "the RAW's description is damaged (pattern, levels, gains, colour matrix or "
                "camera name out of range)"
            )
        return info

    @property
    def balance(self) -> Tensor:
        """The white-balance gains scaled so that the largest is 1, ``(3, 1, 1)``."""
        g = torch.tensor(self.gains, dtype=torch.float64)
        return (g / g.max()).view(3, 1, 1)


def _pattern(raw: Any, where: str) -> str:
    """The 2x2 Bayer pattern LibRaw reports, as letters; ``ValueError`` for other sensors."""
    desc = raw.color_desc.decode("ascii", "replace")
    if raw.raw_pattern is None:
        raise ValueError(
            f"{where}: expected a Bayer RAW (a 2x2 pattern of red, green and blue); received "
            "a sensor without a colour filter pattern (Foveon, or a linear DNG)"
        )
    cells = np.asarray(raw.raw_pattern)
    if cells.shape != (2, 2) or raw.num_colors != 3 or not set(desc) <= set("RGB"):
        shape = "x".join(str(n) for n in cells.shape) or "scalar"
        raise ValueError(
            f"{where}: expected a Bayer RAW (a 2x2 pattern of red, green and blue); received a "
            f"{shape} pattern of {desc!r}"
        )
    letters = "".join(desc[int(c)] for c in cells.ravel())
    if sorted(letters) != ["B", "G", "G", "R"]:
        raise ValueError(f"{where}: expected a Bayer pattern; received {letters}")
    return letters


def read_raw(path: str | Path) -> tuple[Tensor, RawInfo]:
    """A RAW file (any format LibRaw reads) as the network's RAW ``(3, H, W)`` in ``[0, 1]``
    (see the module; ``H x W`` upright) and what writing it back needs.

    Raises ``ValueError`` in one sentence for a file LibRaw cannot read (not a RAW, truncated,
    damaged) or a sensor that is not Bayer (X-Trans, Foveon, four colours)."""
    import rawpy

    path = Path(path)
    where = path.name
    try:
        with rawpy.imread(str(path)) as raw:
            bayer = np.array(raw.raw_image_visible, dtype=np.float64)  # reads the data now
            pattern = _pattern(raw, where)
            colours = np.asarray(raw.raw_colors_visible)[:2, :2].ravel()
            levels = np.asarray(raw.black_level_per_channel, dtype=np.float64)
            black = tuple(float(levels[c]) for c in colours)
            white = float(raw.white_level)
            wb = np.asarray(raw.camera_whitebalance, dtype=np.float64)[:3]
            if not np.all(wb > 0):
                wb = np.asarray(raw.daylight_whitebalance, dtype=np.float64)[:3]
            if not np.all(wb > 0):
                wb = np.ones(3)
            camera_to_srgb = np.asarray(raw.color_matrix, dtype=np.float64)[:, :3]
            xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3, :3]
            flip = int(raw.sizes.flip)
            linear = raw.postprocess(
                demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD,
                output_color=rawpy.ColorSpace.raw,
                gamma=(1, 1),
                no_auto_bright=True,
                output_bps=16,
                user_wb=[1.0, 1.0, 1.0, 1.0],
                user_flip=0,
                adjust_maximum_thr=0.0,
            )
    except rawpy.LibRawError as err:
        kind = type(err).__name__.removeprefix("LibRaw").removesuffix("Error")
        raise ValueError(
            f"{where}: LibRaw cannot read it as a camera RAW ({kind or 'error'}: the file is "
            "not a RAW LibRaw knows, or it is truncated or damaged)"
        ) from None
    if not white > max(black):
        raise ValueError(f"{where}: white level {white:g} is not above the black level")
    make, model = _camera_name(path)
    xyz_to_camera = _colour_matrix(xyz_to_cam, camera_to_srgb)
    info = RawInfo(
        pattern=pattern,
        black=black,  # type: ignore[arg-type]
        white=white,
        gains=tuple(float(g) for g in wb / wb[1]),  # type: ignore[arg-type]
        xyz_to_camera=tuple(float(v) for v in xyz_to_camera.ravel()),
        flip=flip if flip in _TURNS else 0,
        height=int(bayer.shape[0]),
        width=int(bayer.shape[1]),
        make=make,
        model=model,
    )
    image = torch.from_numpy(np.ascontiguousarray(linear.transpose(2, 0, 1))).double() / 65535
    return develop(image, info).float(), info


def _colour_matrix(xyz_to_cam: np.ndarray, camera_to_srgb: np.ndarray) -> np.ndarray:
    """The XYZ (D65) to camera matrix for DNG's ``ColorMatrix1``: LibRaw's camera matrix
    (``rgb_xyz_matrix``, Adobe's coefficients for the cameras it knows) where it has one;
    else, for a DNG, the one its camera-to-sRGB matrix was made from (a DNG written from it
    reads back the same matrix); else sRGB's own."""
    if np.all(np.isfinite(xyz_to_cam)) and abs(np.linalg.det(xyz_to_cam)) > 1e-9:
        matrix = xyz_to_cam
    elif np.all(np.isfinite(camera_to_srgb)) and abs(np.linalg.det(camera_to_srgb)) > 1e-9:
        matrix = np.linalg.inv(_SRGB_TO_XYZ @ camera_to_srgb)
    else:
        matrix = np.linalg.inv(_SRGB_TO_XYZ)
    return matrix / np.abs(matrix).sum(axis=1, keepdims=True).max()


def _camera_name(path: Path) -> tuple[str, str]:
    """The Make and Model tags of a TIFF-based RAW (DNG, NEF, CR2, ARW, ...); ``("", "")``
    for other formats."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            found = [tags.get(code) for code in (271, 272)]
            names = [str(t.value).strip("\x00 ")[:64] if t is not None else "" for t in found]
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError):
        return "", ""
    return names[0], names[1]


def develop(linear: Tensor, info: RawInfo) -> Tensor:
    """Linear camera RGB ``(3, H, W)`` in the sensor's orientation (black subtracted, divided
    by ``white - black``) -> the network's RAW (white balance, upright, gamma)."""
    balanced = (linear.double() * info.balance.to(linear.device)).clamp(0, 1)
    upright = torch.rot90(balanced, _TURNS[info.flip], dims=(-2, -1))
    return upright ** (1 / GAMMA)


def undevelop(image: Tensor, info: RawInfo) -> Tensor:
    """The network's RAW ``(3, H, W)`` -> linear camera RGB in the sensor's orientation
    (:func:`develop` undone; values clamped to ``[0, 1]``)."""
    linear = image.double().clamp(0, 1) ** GAMMA
    sensor = torch.rot90(linear, -_TURNS[info.flip], dims=(-2, -1))
    return (sensor / info.balance.to(image.device)).clamp(0, 1)


def mosaic(image: Tensor, info: RawInfo) -> np.ndarray:
    """The network's RAW ``(3, H, W)`` -> the sensor's data ``(H', W')`` as ``uint16``: each
    position's colour sampled (pattern ``info.pattern``), scaled to the black and white
    levels and rounded."""
    linear = undevelop(image, info)
    _, h, w = linear.shape
    out = np.empty((h, w), dtype=np.float64)
    values = linear.cpu().numpy()
    for k, letter in enumerate(info.pattern):
        dy, dx = divmod(k, 2)
        black = info.black[k]
        out[dy::2, dx::2] = values["RGB".index(letter), dy::2, dx::2] * (info.white - black) + black
    return np.clip(np.round(out), 0, 65535).astype(np.uint16)


def _rationals(values: Any, denominator: int = 1_000_000) -> list[int]:
    """``[num, den, num, den, ...]`` of each value, as TIFF (S)RATIONAL tags store them."""
    out: list[int] = []
    for v in np.ravel(values):
        f = Fraction(float(v)).limit_denominator(denominator)
        out += [f.numerator, f.denominator]
    return out


def dng_bytes(bayer: np.ndarray, info: RawInfo) -> bytes:
    """A DNG file (uncompressed, 16 bits) of the sensor's data ``(H, W)`` ``uint16`` with
    ``info``'s pattern, levels, as-shot white balance, colour matrix, orientation and camera
    name."""
    import tifffile

    if bayer.ndim != 2 or min(bayer.shape) < 2:
        raise ValueError(f"expected the sensor's data as (H, W); received {bayer.shape}")
    cfa = tuple(_CFA_CODES[c] for c in info.pattern)
    neutral = [1 / g for g in info.gains]
    make, model = info.make or "invblocks", info.model or "restored"
    tags = [
        (271, "s", 0, make, True),  # Make
        (272, "s", 0, model, True),  # Model
        (274, "H", 1, _ORIENTATION[info.flip], True),  # Orientation
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, cfa, True),  # CFAPattern
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 2, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, f"{make} {model}", True),  # UniqueCameraModel
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
        (50714, "2I", 4, _rationals(info.black), True),  # BlackLevel
        (50717, "I", 1, round(info.white), True),  # WhiteLevel
        (50721, "2i", 9, _rationals(info.xyz_to_camera), True),  # ColorMatrix1
        (50728, "2I", 3, _rationals(neutral), True),  # AsShotNeutral
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
    ]
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        np.ascontiguousarray(bayer, dtype=np.uint16),
        photometric=32803,  # CFA
        planarconfig="contig",
        compression=None,
        extratags=tags,
        subfiletype=0,
        metadata=None,
        software=False,
    )
    return buffer.getvalue()
