"""What crosses a channel, and the files it travels in.

A :class:`Payload` is what a channel's deployment face sends for one embedding: 8-bit pixel
values (written as a PNG), the bytes of a JPEG file, or an entropy-coded bitstream (written in
the invblocks bitstream container, ``.ibc``). The container is versioned and checked:

.. code-block:: text

    magic     8 bytes  89 49 42 43 0D 0A 1A 0A  ("\\x89IBC\\r\\n\\x1a\\n": catches text-mode
                                                  transfers, as PNG's signature does)
    version   uint16   CONTAINER_VERSION
    header    uint32 length, then UTF-8 JSON: {"meta": ..., "channel": name,
                                               "shape": [C, h, w], "info": {...}}
    data      uint64 length, then the channel's bytes
    checksum  uint32   CRC-32 of everything before it

(integers big-endian). ``meta`` is the model's: format, task, input count, original size.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import Any

import attrs
from torch import Tensor

from ..io import parse_json

__all__ = [
    "CONTAINER_MAGIC",
    "CONTAINER_SUFFIX",
    "CONTAINER_VERSION",
    "META_KEY",
    "Payload",
    "dumps_container",
    "image_channels",
    "loads_container",
    "meta_from_text",
]

CONTAINER_MAGIC = b"\x89IBC\r\n\x1a\n"
CONTAINER_VERSION = 1
CONTAINER_SUFFIX = ".ibc"
_MAX_HEADER = 1 << 20
META_KEY = "invblocks"
"""The key under which an embedding file carries the model's metadata (a PNG text chunk, the
JSON of a JPEG comment)."""


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


@attrs.frozen(eq=False)
class Payload:
    """What a channel sends for one embedding.

    Arguments:
        data: The bytes a codec wrote (a JPEG file, a bitstream), or pixel values as an
            integer tensor ``(C, h, w)`` (the 8-bit quantiser's payload).
        shape: The shape ``(C, h, w)`` of the embedding it decodes to.
        info: What else the channel needs to decode it (JSON values: stream lengths, a
            hyper-latent's shape), written with the data.
    """

    data: bytes | Tensor
    shape: tuple[int, ...] = attrs.field(converter=_shape)
    info: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def nbytes(self) -> int:
        """The size of the data in bytes."""
        if isinstance(self.data, bytes):
            return len(self.data)
        return self.data.numel() * self.data.element_size()


def dumps_container(payload: Payload, channel: str, meta: Mapping[str, Any]) -> bytes:
    """The bitstream container of ``payload`` (its data must be bytes), for the channel
    registered as ``channel``, carrying the model's ``meta``."""
    import json

    if not isinstance(payload.data, bytes):
        raise TypeError(f"the container holds bytes; received a {type(payload.data).__name__}")
    header = json.dumps(
        {"meta": dict(meta), "channel": channel, "shape": list(payload.shape),
         "info": dict(payload.info)},
        separators=(",", ":"), allow_nan=False,
    ).encode()  # fmt: skip
    body = b"".join(
        (
            CONTAINER_MAGIC,
            struct.pack(">HI", CONTAINER_VERSION, len(header)),
            header,
            struct.pack(">Q", len(payload.data)),
            payload.data,
        )
    )
    return body + struct.pack(">I", zlib.crc32(body))


def loads_container(data: bytes, where: str) -> tuple[dict[str, Any], str, Payload]:
    """``(meta, channel name, payload)`` from a container's bytes; ``ValueError`` naming
    ``where`` (the file) and what is wrong: not a container, a newer version, truncated,
    damaged (the checksum), or a header that is not what the writer writes."""
    if not data.startswith(CONTAINER_MAGIC):
        raise ValueError(
            f"{where} is not an invblocks bitstream (it does not start with the container's "
            "signature)"
        )
    fixed = len(CONTAINER_MAGIC) + 6
    if len(data) < fixed + 12:
        raise ValueError(f"{where} is truncated ({len(data)} bytes)")
    version, header_len = struct.unpack_from(">HI", data, len(CONTAINER_MAGIC))
    if version < 1:
        raise ValueError(f"{where} is damaged (its container version is {version})")
    if version > CONTAINER_VERSION:
        raise ValueError(
            f"{where} is a version-{version} bitstream; this invblocks reads version "
            f"{CONTAINER_VERSION} (a newer invblocks wrote it?)"
        )
    if header_len > _MAX_HEADER or fixed + header_len + 12 > len(data):
        raise ValueError(f"{where} is truncated or damaged (its header runs past the file)")
    (data_len,) = struct.unpack_from(">Q", data, fixed + header_len)
    end = fixed + header_len + 8 + data_len
    if end + 4 != len(data):
        state = "truncated" if end + 4 > len(data) else "damaged (bytes after its end)"
        raise ValueError(f"{where} is {state}")
    (crc,) = struct.unpack_from(">I", data, end)
    if zlib.crc32(data[:end]) != crc:
        raise ValueError(f"{where} is damaged: its checksum does not match its contents")
    header = parse_json(data[fixed : fixed + header_len], f"{where}: the header")
    if (
        not isinstance(header, dict)
        or not isinstance(header.get("meta"), dict)
        or not isinstance(header.get("channel"), str)
        or not isinstance(header.get("shape"), list)
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in header["shape"])
        or not isinstance(header.get("info", {}), dict)
    ):
        raise ValueError(f"{where}: its header is not what invblocks writes")
    payload = Payload(
        bytes(data[fixed + header_len + 8 : end]), header["shape"], header.get("info", {})
    )
    return header["meta"], header["channel"], payload


def image_channels(pixels: Tensor, mode: str, want: int | None, where: str) -> Tensor:
    """``pixels`` as the embedding's ``want`` channels; ``ValueError`` for a file whose
    colour model says it was converted after embedding (CMYK, or gray for colour)."""
    if want is None or pixels.shape[0] == want:
        if mode in ("CMYK", "YCbCr"):
            raise ValueError(f"{where} is a {mode} image; embeddings are RGB or grayscale")
        return pixels
    if want == 1 and pixels.shape[0] == 3:
        raise ValueError(
            f"{where} is a colour image; this model's embeddings are grayscale "
            "(was it converted after embedding?)"
        )
    if want == 3 and pixels.shape[0] == 1:
        raise ValueError(
            f"{where} is a grayscale image; this model's embeddings are RGB "
            "(was it converted after embedding?)"
        )
    raise ValueError(f"{where} has {pixels.shape[0]} channels; this model's embeddings {want}")


def meta_from_text(text: Mapping[str, str], where: str) -> dict[str, Any]:
    """The model's metadata an image file carries (``{}`` when another program dropped
    it); ``ValueError`` when it is there but not a JSON object."""
    if META_KEY not in text:
        return {}
    try:
        meta = parse_json(text[META_KEY], "it")
    except ValueError as err:
        raise ValueError(f"{where}: its invblocks metadata is damaged: {err}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: its invblocks metadata is damaged (not a JSON object)")
    return meta
