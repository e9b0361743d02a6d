"""Image files: read to tensors, write 8-bit PNGs and JPEGs atomically, carry metadata.

The bundled photographs are found by :func:`invblocks.data.default_file`; ``PHOTOS`` and
``photo_path`` here are deprecated aliases kept for one release.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo
from torch import Tensor

__all__ = [
    "atomic_write",
    "ensure_folder",
    "file_mode",
    "folder_mode",
    "json_safe",
    "read_image",
    "read_metadata",
    "read_png_text",
    "to_uint8",
    "write_image",
    "write_jpeg",
    "write_png",
]

JPEG_SUFFIXES = (".jpg", ".jpeg")
"""File endings written as JPEG by :func:`write_image` (anything else is refused there)."""

_MOVED = {"PHOTOS", "photo_path"}


def __getattr__(name: str) -> Any:
    """The deprecated bundled-photo lookup, now :func:`invblocks.data.default_file`."""
    if name not in _MOVED:
        raise AttributeError(f"module 'invblocks.io' has no attribute {name!r}")
    import warnings

    from .data import _bundled  # lazily: data is the layer above io

    warnings.warn(
        f"invblocks.io.{name} is deprecated and will be removed in 0.3: "
        "use invblocks.data.default_file(name)",
        DeprecationWarning,
        stacklevel=2,
    )
    if name == "PHOTOS":
        return {k: v[:2] for k, v in _bundled._PHOTOS.items()}
    return _bundled.default_file


def read_image(
    path: str | os.PathLike, mode: str = "RGB", *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Read an image file as a float tensor in ``[0, 1]`` of shape ``(C, H, W)``, or with
    ``dtype=torch.uint8`` as its 8-bit values (a quarter of the memory: how data sets keep
    their images, see :func:`invblocks.ops.to_float`).

    ``mode`` is ``"RGB"`` (3 channels) or ``"L"`` (1). Other files are converted: palette and
    grayscale to RGB by Pillow, RGBA by dropping alpha, 16-bit grayscale by dividing by 65535
    (Pillow's own conversion would clip it), 16-bit RGB PNGs as Pillow reads them (8 bits).
    Raises ``ValueError`` naming the file when it is truncated or not an image,
    ``FileNotFoundError`` when it is missing.
    """
    if dtype not in (torch.float32, torch.uint8):
        raise ValueError(
            f"read_image: dtype must be torch.float32 or torch.uint8; received {dtype}"
        )
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16L", "I;16B", "I"):  # 16-bit (or 32-bit) grayscale
                gray = np.asarray(img, dtype=np.float64)
                scale = 65535.0 if img.mode != "I" or gray.max() > 255 else 255.0
                t = torch.from_numpy(gray / scale).float().clamp_(0, 1)[None]
                t = t.repeat(3, 1, 1) if mode == "RGB" else t
                return t.mul(255).round_().to(torch.uint8) if dtype == torch.uint8 else t
            arr = np.asarray(img.convert(mode))
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as err:
        raise ValueError(f"cannot read image {path}: {_bomb(err)}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    t = torch.from_numpy(arr.copy())
    t = t[None] if t.dim() == 2 else t.permute(2, 0, 1).contiguous()
    return t if dtype == torch.uint8 else t.float().div_(255.0)


def to_uint8(image: Tensor) -> np.ndarray:
    """``(C, H, W)`` in ``[0, 1]`` -> ``(H, W, C)`` (or ``(H, W)``) uint8, rounding to nearest."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"expected an image of shape (1 or 3, H, W); received {tuple(image.shape)}"
        )
    arr = torch.round(image.detach().float().clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)


def read_png_text(path: str | os.PathLike) -> dict[str, str]:
    """The text chunks of a PNG file (empty for other formats)."""
    try:
        with Image.open(path) as img:
            return dict(getattr(img, "text", {}) or {})
    except Image.DecompressionBombError as err:
        raise ValueError(f"cannot read image {path}: {_bomb(err)}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def _bomb(err: Exception) -> str:
    """Pillow's decompression-bomb refusal in one sentence."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    size = f"{int(found[1]):,} pixels" if found else "too many pixels"
    limit = Image.MAX_IMAGE_PIXELS or 0
    return (
        f"it has {size}, more than twice Pillow's safety limit of {limit:,} "
        "(a decompression bomb, or an image far too large to embed)"
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode new files get from the process's umask (``0o644`` under the usual 022,
    ``0o600`` under 077), as ordinary tools create them."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode new folders get from the umask (``0o755`` under 022, ``0o700`` under 077)."""
    return 0o777 & ~_umask()


def _reason(err: OSError) -> str:
    """What an OS error says, without the (temporary) file names it carries."""
    return err.strerror or type(err).__name__


def ensure_folder(folder: str | os.PathLike) -> Path:
    """``folder`` and its parents, created as needed; ``ValueError`` in one sentence when a
    file stands in the way or the folder cannot be made."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        blocker = next((p for p in (folder, *folder.parents) if p.is_file()), folder)
        raise ValueError(f"cannot create the folder {folder}: {blocker} is a file") from None
    except NotADirectoryError:
        blocker = next((p for p in folder.parents if p.is_file()), folder.parent)
        raise ValueError(f"cannot create the folder {folder}: {blocker} is a file") from None
    except OSError as err:
        raise ValueError(f"cannot create the folder {folder}: {_reason(err)}") from None
    return folder


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Write ``path`` all at once or not at all: yields a binary file to write into.

    The data go to a temporary file in the same folder, which is flushed to disk and renamed
    over ``path`` when the ``with`` block ends normally; when it raises (or the process
    dies) the temporary file is removed or left under a hidden name, and an existing
    ``path`` is untouched. The folder must exist. The file gets the mode the umask gives new
    files (:func:`file_mode`), not the temporary file's owner-only one. OS errors raise
    ``ValueError`` naming ``path`` (never the temporary file).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
        >>> with atomic_write(target) as f:
        ...     _ = f.write(b"complete")
        >>> target.read_bytes()
        b'complete'
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except FileNotFoundError:
        raise ValueError(f"cannot write {path}: its folder does not exist") from None
    except NotADirectoryError:
        raise ValueError(f"cannot write {path}: {path.parent} is a file") from None
    except OSError as err:
        raise ValueError(f"cannot write {path}: {_reason(err)}") from None
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise ValueError(f"cannot write {path}: {_reason(err)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(
    image: Tensor, path: str | os.PathLike, *, text: dict[str, str] | None = None
) -> Path:
    """Write a ``(C, H, W)`` image in ``[0, 1]`` as an 8-bit PNG, atomically.

    The file appears complete or not at all (written to a temporary file in the same folder,
    then renamed). Values are rounded to the nearest of 256 levels, so a tensor already on
    that grid reads back bit-identical with :func:`read_image`. ``text`` is stored as PNG
    text chunks (read back with :func:`read_png_text`).
    """
    path = Path(path)
    ensure_folder(path.parent)
    img = Image.fromarray(to_uint8(image))
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    with atomic_write(path) as f:
        img.save(f, format="PNG", pnginfo=info)
    return path


_COMMENT_PREFIX = b"invblocks-text:"


def write_jpeg(
    image: Tensor,
    path: str | os.PathLike,
    *,
    quality: int = 95,
    text: dict[str, str] | None = None,
) -> Path:
    """Write a ``(C, H, W)`` image in ``[0, 1]`` (``C`` 1 or 3) as a baseline JPEG at
    ``quality`` (1..100, 4:2:0 chroma subsampling: what libjpeg and most programs write),
    atomically. ``text`` is stored in the file's comment (COM) segment as JSON, read back by
    :func:`read_metadata`."""
    import json

    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100; received {quality}")
    path = Path(path)
    ensure_folder(path.parent)
    img = Image.fromarray(to_uint8(image))
    extra = {"comment": _COMMENT_PREFIX + json.dumps(text).encode()} if text else {}
    with atomic_write(path) as f:
        img.save(f, format="JPEG", quality=int(quality), subsampling=2, **extra)
    return path


def write_image(
    image: Tensor,
    path: str | os.PathLike,
    *,
    text: dict[str, str] | None = None,
    quality: int | None = None,
) -> Path:
    """:func:`write_png` or :func:`write_jpeg` by the file's ending (``.png``, ``.jpg``,
    ``.jpeg``); ``quality`` is for JPEG (default 95). ``ValueError`` for other endings."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        if quality is not None:
            raise ValueError(f"a quality is for JPEG files; {path} is a PNG (lossless)")
        return write_png(image, path, text=text)
    if suffix in JPEG_SUFFIXES:
        return write_jpeg(image, path, quality=95 if quality is None else quality, text=text)
    raise ValueError(f"{path}: embeddings are written as .png or .jpg; received {suffix!r}")


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The text a file carries: a PNG's text chunks, or what :func:`write_jpeg` put in a
    JPEG's comment segment (empty for other files, or when another program dropped it)."""
    import json

    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                comment = img.info.get("comment", b"")
                if isinstance(comment, bytes) and comment.startswith(_COMMENT_PREFIX):
                    try:
                        data = json.loads(comment[len(_COMMENT_PREFIX) :].decode())
                    except ValueError:
                        return {}
                    return (
                        {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
                    )
                return {}
            return dict(getattr(img, "text", {}) or {})
    except Image.DecompressionBombError as err:
        raise ValueError(f"cannot read image {path}: {_bomb(err)}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, infinity) replaced by ``None``, so that
    ``json.dumps`` writes standard JSON (``NaN`` and ``Infinity`` are not JSON)."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
