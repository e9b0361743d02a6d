"""Image files: read to tensors, write 8-bit PNGs and JPEGs atomically, carry metadata.

The bundled photographs are found by :func:`invblocks.data.default_file`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo
from torch import Tensor

from . import _deprecated

__all__ = [
    "FolderLocked",
    "atomic_write",
    "check_regular",
    "decode_image",
    "encode_jpeg",
    "encode_png",
    "ensure_folder",
    "file_mode",
    "folder_mode",
    "json_safe",
    "lock_folder",
    "parse_json",
    "read_image",
    "read_metadata",
    "read_png_text",
    "to_uint8",
    "with_jpeg_text",
    "write_all",
    "write_bytes",
    "write_image",
    "write_jpeg",
    "write_png",
]

JPEG_SUFFIXES = (".jpg", ".jpeg")
"""File endings written as JPEG by :func:`write_image` (anything else is refused there)."""

__getattr__ = _deprecated.getattr_for(__name__)  # PHOTOS, photo_path (removed in 0.3)


def check_regular(path: str | os.PathLike, what: str = "file") -> Path:
    """``path``, when it is a regular file (symbolic links followed); ``FileNotFoundError``
    when it does not exist, ``ValueError`` in one sentence for anything else that would
    block or mislead a reader: a named pipe, a device, a socket, a folder."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(2, "No such file or directory", str(path)) from None
    except OSError as err:  # a symbolic-link loop, a name too long, no permission
        raise ValueError(f"cannot read {what} {path}: {err.strerror or err}") from None
    import stat

    if not stat.S_ISREG(mode):
        kind = (
            "a folder" if stat.S_ISDIR(mode)
            else "a named pipe" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file"
        )  # fmt: skip
        raise ValueError(f"cannot read {what} {path}: it is {kind}, not a regular file")
    return path


def read_image(
    path: str | os.PathLike, mode: str = "RGB", *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Read an image file as a float tensor in ``[0, 1]`` of shape ``(C, H, W)``, or with
    ``dtype=torch.uint8`` as its 8-bit values (a quarter of the memory: how data sets keep
    their images, see :func:`invblocks.ops.to_float`).

    ``mode`` is ``"RGB"`` (3 channels), ``"L"`` (1) or ``"RGBA"`` (4: how 4-channel images
    such as packed RAW travel; an image without alpha gets an opaque one). Other files are
    converted: palette and
    grayscale to RGB by Pillow, RGBA by dropping alpha, 16-bit grayscale by dividing by 65535
    (Pillow's own conversion would clip it), 16-bit RGB PNGs as Pillow reads them (8 bits).
    Raises ``ValueError`` naming the file when it is truncated or not an image,
    ``FileNotFoundError`` when it is missing.
    """
    if dtype not in (torch.float32, torch.uint8):
        raise ValueError(
            f"read_image: dtype must be torch.float32 or torch.uint8; received {dtype}"
        )
    path = check_regular(path, "image")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16L", "I;16B", "I"):  # 16-bit (or 32-bit) grayscale
                gray = np.asarray(img, dtype=np.float64)
                scale = 65535.0 if img.mode != "I" or gray.max() > 255 else 255.0
                t = torch.from_numpy(gray / scale).float().clamp_(0, 1)[None]
                if mode in ("RGB", "RGBA"):
                    t = t.repeat(3, 1, 1)
                if mode == "RGBA":  # opaque
                    t = torch.cat([t, torch.ones_like(t[:1])])
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
    """``(C, H, W)`` in ``[0, 1]`` -> ``(H, W, C)`` (or ``(H, W)``) uint8, rounding to nearest;
    ``C`` is 1 (gray), 3 (RGB) or 4 (RGBA: 4-channel images such as packed RAW)."""
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"expected an image of shape (1, 3 or 4, H, W); received {tuple(image.shape)}"
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
def new_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """``folder`` and its parents made as needed (:func:`ensure_folder`) for the ``with``
    block; when the block raises, the folders it made are removed again (those still empty),
    so that a write that failed leaves nothing behind."""
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
    try:
        ensure_folder(folder)  # may fail below folders it already made
        yield folder
    except BaseException:
        for made in missing:  # deepest first
            with contextlib.suppress(OSError):
                made.rmdir()
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Write ``path`` all at once or not at all: yields a binary file to write into.

    The data go to a temporary file in the same folder (a short hidden name, ``.ib-XXXXXXXX.tmp``,
    so that any name the file system takes can be written), which is flushed to disk and renamed
    over ``path`` when the ``with`` block ends normally; when it raises (or the process dies) the
    temporary file is removed or left under a hidden name, and an existing ``path`` is untouched.
    The folder must exist. The file gets the mode the umask gives new files (:func:`file_mode`), not
    the temporary file's owner-only one. OS errors raise ``ValueError`` naming ``path`` (never the
    temporary file).

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
        fd, tmp = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=".tmp", dir=path.parent)
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
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, tmp):  # writing it, a full disk
            raise ValueError(f"cannot write {path}: {_reason(err)}") from None
        raise


def encode_png(image: Tensor, text: dict[str, str] | None = None) -> bytes:
    """A ``(C, H, W)`` image in ``[0, 1]`` (``C`` 1 or 3) as the bytes of an 8-bit PNG, values
    rounded to the nearest of 256 levels; ``text`` in PNG text chunks."""
    img = Image.fromarray(to_uint8(image))
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


_COMMENT_PREFIX = b"invblocks-text:"
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
"""Chroma subsampling by name, as Pillow's JPEG writer numbers it."""


def encode_jpeg(
    image: Tensor,
    quality: int = 95,
    *,
    subsampling: str = "4:2:0",
    text: dict[str, str] | None = None,
) -> bytes:
    """A ``(C, H, W)`` image in ``[0, 1]`` (``C`` 1 or 3) as the bytes of a baseline JPEG at
    ``quality`` (1..100) with ``subsampling`` (``"4:2:0"``: what libjpeg and most programs
    write; ``"4:2:2"``, ``"4:4:4"``); ``text`` in its comment (COM) segment as JSON."""
    import json

    if isinstance(quality, bool) or not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100; received {quality!r}")
    if subsampling not in SUBSAMPLING:
        raise ValueError(
            f"JPEG subsampling must be one of {', '.join(SUBSAMPLING)}; received {subsampling!r}"
        )
    img = Image.fromarray(to_uint8(image))
    extra = {"comment": _COMMENT_PREFIX + json.dumps(text).encode()} if text else {}
    buffer = io.BytesIO()
    img.save(
        buffer, format="JPEG", quality=int(quality), subsampling=SUBSAMPLING[subsampling], **extra
    )
    return buffer.getvalue()


def with_jpeg_text(data: bytes, text: dict[str, str]) -> bytes:
    """The JPEG file ``data`` with ``text`` in a comment (COM) segment right after its start
    marker: the same coded image, the metadata :func:`read_metadata` reads."""
    import json

    comment = _COMMENT_PREFIX + json.dumps(text).encode()
    if not data.startswith(b"\xff\xd8") or len(comment) > 65533:
        raise ValueError("with_jpeg_text: not a JPEG, or a comment over 64 KiB")
    return data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]


class FolderLocked(ValueError):
    """Another live process holds the folder's lock (:func:`lock_folder`)."""


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (which must exist) while the ``with`` block runs:
    a second process (or a second lock in this one) is refused with :class:`FolderLocked`,
    one sentence naming the process that holds it.

    The lock is the kernel's (``fcntl.flock`` on the hidden file ``.invblocks.lock``, which
    also holds the holder's process id): it goes with its process, so a killed process never
    leaves a stale lock behind. The file is removed when the block ends. Where ``fcntl`` does
    not exist (Windows), nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield Path(folder)
        return
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ValueError(f"cannot lock {what} {folder}: {_reason(err)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            raise FolderLocked(
                f"{what} {folder} is in use by process {holder} (another invblocks command is "
                "writing it); wait for it to end, or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield Path(folder)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
    finally:
        os.close(fd)


LOCK_NAME = ".invblocks.lock"
"""The hidden file by which :func:`lock_folder` locks a folder."""

TEMPORARY_PREFIX = ".ib-"
"""The start of the hidden names of files being written (``.ib-XXXXXXXX.tmp``)."""


def _backup(path: Path) -> tuple[Path, bool]:
    """A second name for the file ``path`` under a hidden temporary name in its folder, to
    put it back with, and whether the file was moved there: a hard link where the file
    system has them (``path`` keeps its file until it is replaced; a symbolic link is linked
    itself), else a rename."""
    fd, kept = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=".tmp", dir=path.parent)
    os.close(fd)
    backup, moved = Path(kept), False
    try:
        try:
            backup.unlink()
            os.link(path, backup, follow_symlinks=False)
        except (OSError, NotImplementedError):  # no hard links here (or the name was taken)
            backup.touch(exist_ok=True)
            os.replace(path, backup)
            moved = True
        return backup, moved
    except BaseException:
        with contextlib.suppress(OSError):
            if moved:  # interrupted after the move: the file goes back to its name
                os.replace(backup, path)
            else:
                backup.unlink(missing_ok=True)
        raise


def write_all(files: Sequence[tuple[str | os.PathLike, bytes]]) -> list[Path]:
    """Write several files all or none: each is written and flushed under a hidden temporary
    name in its folder first, then they are renamed into place one by one; when one of them
    cannot be (a full disk, a folder in the way, a permission), those already placed are taken
    back and the files they replaced put back, so that nothing at those paths has changed.
    Errors are ``ValueError`` naming the path."""
    staged: list[tuple[Path, Path]] = []
    placed: list[tuple[Path, Path | None]] = []
    current: Path | None = None
    made: list[Path] = []  # folders this call made, deepest first per file
    try:
        for target, data in files:
            current = Path(target)
            made += [p for p in (current.parent, *current.parent.parents) if not os.path.lexists(p)]
            ensure_folder(current.parent)
            if current.is_dir():
                raise ValueError(f"cannot write {current}: it is a folder")
            fd, temporary = tempfile.mkstemp(
                prefix=TEMPORARY_PREFIX, suffix=".tmp", dir=current.parent
            )
            staged.append((Path(temporary), current))
            os.fchmod(fd, file_mode())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for staging, current in staged:
            pending: tuple[Path, bool] | None = None
            try:
                pending = _backup(current) if os.path.lexists(current) else None
                os.replace(staging, current)  # a linked old file keeps its name until this
            except BaseException:
                if pending is not None:
                    kept, moved = pending
                    with contextlib.suppress(OSError):
                        if moved:
                            os.replace(kept, current)
                        else:
                            kept.unlink()
                raise
            placed.append((current, pending[0] if pending else None))
    except BaseException as err:
        for path, before in reversed(placed):  # take back what was placed
            with contextlib.suppress(OSError):
                if before is not None:
                    os.replace(before, path)
                else:
                    path.unlink(missing_ok=True)
        for staging, _ in staged:
            with contextlib.suppress(OSError):
                staging.unlink(missing_ok=True)
        for folder in sorted(set(made), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(err, OSError):
            raise ValueError(f"cannot write {current or 'the files'}: {_reason(err)}") from None
        raise
    for _, before in placed:
        if before is not None:
            with contextlib.suppress(OSError):
                before.unlink()
    return [path for _, path in staged]


def write_png(
    image: Tensor, path: str | os.PathLike, *, text: dict[str, str] | None = None
) -> Path:
    """Write a ``(C, H, W)`` image in ``[0, 1]`` as an 8-bit PNG, atomically.

    The file appears complete or not at all (written to a temporary file in the same folder,
    then renamed). Values are rounded to the nearest of 256 levels, so a tensor already on
    that grid reads back bit-identical with :func:`read_image`. ``text`` is stored as PNG
    text chunks (read back with :func:`read_png_text`).
    """
    return write_bytes(encode_png(image, text), path)


def write_jpeg(
    image: Tensor,
    path: str | os.PathLike,
    *,
    quality: int = 95,
    text: dict[str, str] | None = None,
    subsampling: str = "4:2:0",
) -> Path:
    """Write a ``(C, H, W)`` image in ``[0, 1]`` (``C`` 1 or 3) as a baseline JPEG at
    ``quality`` (1..100, 4:2:0 chroma subsampling unless ``subsampling`` says otherwise),
    atomically. ``text`` is stored in the file's comment (COM) segment as JSON, read back by
    :func:`read_metadata`."""
    return write_bytes(encode_jpeg(image, quality, subsampling=subsampling, text=text), path)


def write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically, making its folder (:func:`atomic_write`)."""
    path = Path(path)
    with new_folder(path.parent), atomic_write(path) as f:
        f.write(data)
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


def decode_image(data: bytes, where: str) -> tuple[Tensor, str, dict[str, str]]:
    """``(pixels, mode, text)`` of an image file's bytes: its 8-bit values ``(C, H, W)``
    (``uint8``; 1 channel for gray files, 3 for colour ones, alpha dropped), Pillow's mode
    of the file, and the text it carries (:func:`read_metadata`). ``ValueError`` naming
    ``where`` for bytes that are not an image, a truncated file or a decompression bomb."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = str(img.mode)
            text = _text_of(img)
            gray = mode in ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F")
            arr = np.asarray(img.convert("L" if gray else "RGB"))
    except Image.DecompressionBombError as err:
        raise ValueError(f"cannot read image {where}: {_bomb(err)}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {where}: {_short_reason(err)}") from None
    t = torch.from_numpy(arr.copy())
    return (t[None] if t.dim() == 2 else t.permute(2, 0, 1).contiguous()), mode, text


def _short_reason(err: Exception, limit: int = 80) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text_of(img: Image.Image) -> dict[str, str]:
    """What :func:`read_metadata` returns, from an open image."""
    import json

    if img.format == "JPEG":
        comment = img.info.get("comment", b"")
        if isinstance(comment, bytes) and comment.startswith(_COMMENT_PREFIX):
            try:
                data = json.loads(comment[len(_COMMENT_PREFIX) :].decode())
            except (ValueError, RecursionError, UnicodeDecodeError):
                return {}
            return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        return {}
    return {str(k): str(v) for k, v in (getattr(img, "text", {}) or {}).items()}


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The text a file carries: a PNG's text chunks, or what :func:`write_jpeg` put in a
    JPEG's comment segment (empty for other files, or when another program dropped it)."""
    try:
        with Image.open(path) as img:
            return _text_of(img)
    except Image.DecompressionBombError as err:
        raise ValueError(f"cannot read image {path}: {_bomb(err)}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def parse_json(text: str | bytes, what: str) -> Any:
    """``text`` parsed as JSON; ``ValueError`` naming ``what`` when it is not JSON (``NaN``
    and ``Infinity``, which Python's parser would take, included: no file invblocks reads
    holds them) or is nested too deeply for the parser (a hostile file's ``[[[[...]]]]``)."""
    import json

    def refuse(word: str) -> Any:
        raise ValueError(f"it holds {word}, which JSON does not have")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError) as err:
        if "digits" in str(err):  # Python's limit on an int's digits
            raise ValueError(f"{what} holds a number of thousands of digits") from None
        raise ValueError(f"{what} is not JSON ({err})") from None


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
