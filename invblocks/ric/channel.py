"""The channel contract: what an embedding crosses on its way to the restorer.

A channel has two faces, as a learned codec has:

* the **training face**, the block's forward pass: a differentiable surrogate of what happens
  to the embedding (uniform noise, straight-through rounding, a differentiable JPEG, an
  entropy model's noisy latent). It may return auxiliary outputs (``_forward_aux``, e.g. the
  likelihoods a rate term reads), which :meth:`invblocks.ric.network.RICNet.round_trip` hands to the
  loss terms as ``result.channel_aux``; its inverse is what the restorer applies first;
* the **deployment face**: :meth:`Channel.encode` turns embeddings into what is really sent
  (:class:`~invblocks.ric.payload.Payload`: 8-bit pixels, JPEG bytes, a bitstream) and
  :meth:`Channel.decode` turns that back into the embedding the restorer starts from; each
  channel writes its payload as files with the suffixes it declares.

A channel also says when a network does not suit it (:meth:`Channel.problems`), adds its
evaluation metrics (:meth:`Channel.metrics`), may train parameters with an optimiser of their
own (:meth:`Channel.param_groups`) and bring deployment state up to date before a checkpoint
(:meth:`Channel.finalize`). Channels are registered by name in :data:`CHANNELS`
(``--set channel=NAME``); a plugin adds one with ``registry.add_channel(cls)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..block import Block, Inversion
from ..io import atomic_write, check_regular, new_folder
from ..registry import BLOCKS, NamedRegistry
from .groups import ParamGroup
from .payload import CONTAINER_SUFFIX, Payload, dumps_container, loads_container

__all__ = ["CHANNELS", "Channel", "build_channel", "channel_class", "register_channel"]


class Channel(Block):
    """Base class of channels (a :class:`~invblocks.block.Block` with a deployment face).

    Subclasses implement the block hooks (``_forward``: the training surrogate in training
    mode, what the channel really does in eval mode; ``_inverse``: usually the identity;
    ``_output_dims``/``_input_dims``), and :meth:`encode`/:meth:`decode`. A channel whose
    payload is bytes is written in the invblocks bitstream container (``.ibc``) unless it
    overrides :meth:`dumps` and :meth:`loads`.

    Class attributes:
        name: The registry name (``--set channel=NAME``; lower case).
        suffixes: The payload files it writes; the first is its default.
        image_embedding: Whether the embedding is an image with values in ``[0, 1]``.

    :meth:`invblocks.model.Model.restore` checks that an image embedding (8-bit pixels, a
    JPEG's) is in ``[0, 1]``; a channel whose embedding is a latent of any finite values (an
    entropy coder's) sets ``image_embedding = False``.

    Shapes:
        ``(B, C, h, w) -> same`` for the built-in channels; any shape the inverse undoes.
    """

    inversion = Inversion.STE
    name: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = (CONTAINER_SUFFIX,)
    image_embedding: ClassVar[bool] = True

    # ---------------------------------------------------------- deployment face
    def encode(self, e: Tensor) -> list[Payload]:
        """What is sent for embeddings ``e`` ``(B, C, h, w)``: one payload per item."""
        raise NotImplementedError(f"{self._name()} has no deployment face (encode)")

    def decode(self, payloads: Sequence[Payload], dtype: torch.dtype = torch.float32) -> Tensor:
        """The embeddings ``(B, C, h, w)`` the receiver decodes from ``payloads``, as
        ``dtype``, on the CPU."""
        raise NotImplementedError(f"{self._name()} has no deployment face (decode)")

    def decode_memory(self, shape: Sequence[int]) -> int:
        """Bytes, about, that decoding one payload declaring an embedding of ``shape``
        ``(C, h, w)`` takes at its peak. :class:`~invblocks.model.Model` refuses, before
        decoding, a payload that needs more than this machine has free: a file's few bytes
        can declare an embedding of terabytes. Default: 32 bytes a value (the decoded
        embedding in float64 and float32, the pixels); a channel that runs networks to decode
        (an entropy model) says more."""
        return 32 * math.prod(int(n) for n in shape)

    # -------------------------------------------------------------------- files
    def for_file(self, suffix: str, quality: int | None = None) -> Channel:
        """The channel whose deployment face writes a ``suffix`` file of this channel's
        embeddings: this one when it writes such files, or another that carries the same
        embedding (the 8-bit quantiser's embedding as a JPEG at ``quality``).

        Raises:
            ValueError: naming the suffixes this channel writes.
        """
        suffix = suffix.lower()
        if suffix not in self.suffixes:
            raise self._unwritable(suffix)
        if quality is not None:
            raise ValueError(f"a quality is for JPEG files; {suffix} files take none")
        return self

    writable: ClassVar[tuple[str, ...]] = ()
    """The suffixes :meth:`for_file` answers (default: ``suffixes``), for messages."""

    def _unwritable(self, suffix: str) -> ValueError:
        known = list(self.writable or self.suffixes)
        listed = ", ".join(known[:-1]) + f" or {known[-1]}" if len(known) > 1 else known[0]
        return ValueError(
            f"this model's channel ({self.name or self._name()}) writes {listed} files; "
            f"received {suffix or 'no suffix'!r}"
        )

    def dumps(self, payload: Payload, meta: Mapping[str, Any]) -> bytes:
        """A file's bytes holding ``payload`` and the model's ``meta``."""
        return dumps_container(payload, self.name or type(self).__name__, meta)

    def loads(self, data: bytes, where: str) -> tuple[Payload, dict[str, Any]]:
        """``(payload, meta)`` from a file's bytes (``where`` names it in errors);
        ``ValueError`` for a file this channel did not write."""
        meta, channel, payload = loads_container(data, where)
        if channel != (self.name or type(self).__name__):
            raise ValueError(
                f"{where} was written by the channel {channel[:40]!r}; this model's is "
                f"{self.name or type(self).__name__!r}"
            )
        return payload, meta

    def write(self, payload: Payload, path: str | Path, meta: Mapping[str, Any]) -> Path:
        """Write ``payload`` with ``meta`` to ``path`` atomically (all or nothing)."""
        path = Path(path)
        data = self.dumps(payload, meta)
        with new_folder(path.parent), atomic_write(path) as f:
            f.write(data)
        return path

    def read(self, path: str | Path) -> tuple[Payload, dict[str, Any]]:
        """``(payload, meta)`` from a file this channel wrote; ``ValueError`` in one sentence
        for a missing, irregular, truncated, damaged or foreign file."""
        path = Path(path)
        if not path.exists():
            raise ValueError(f"cannot read {path}: it does not exist")
        check_regular(path, "the embedding")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
        return self.loads(data, str(path))

    # ------------------------------------------------------- checks, metrics
    def problems(self, body: Block) -> list[str]:
        """Why the network body ``body`` does not suit this channel, one sentence each
        (empty: it does). The trainer refuses such a network; ``invblocks embed`` warns."""
        return []

    def metrics(self, payload: Payload, pixels: int, file_bytes: int) -> dict[str, float]:
        """Evaluation metrics of one payload of an image of ``pixels`` pixels whose file
        takes ``file_bytes``: by default the file's bits per pixel (``bpp``) and its size
        (``file_bytes``)."""
        return {"bpp": 8.0 * file_bytes / max(1, pixels), "file_bytes": float(file_bytes)}

    # ----------------------------------------------------------------- training
    def param_groups(self) -> Sequence[ParamGroup]:
        """Parameters of this channel trained by their own optimiser (patterns relative to
        the channel, e.g. an entropy model's quantiles); none by default."""
        return ()

    def finalize(self) -> None:
        """Bring what the deployment face needs up to date with the parameters (an entropy
        model's coding tables). Called before every checkpoint and at the end of training;
        nothing by default."""

    def extra_repr(self) -> str:
        return super().extra_repr()


def _check_channel(cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise TypeError(f"a channel is a subclass of invblocks.ric.Channel; received {cls!r}")


CHANNELS: NamedRegistry[type[Channel]] = NamedRegistry("channel", check=_check_channel)
"""Channel classes by name (``"quantizer"``, ``"jpeg"``, a plugin's)."""


def register_channel(
    cls: type[Channel], name: str | None = None, *, owner: str = "invblocks"
) -> type[Channel]:
    """Register the channel class ``cls`` under ``name`` (default: its ``name`` attribute)
    for ``--set channel=NAME``, and as a block type under its class name (so networks that
    hold it rebuild from JSON configs); usable as a decorator."""
    key = name or cls.name
    if not key:
        raise ValueError(f"channel {cls.__qualname__} needs a name (its 'name' attribute)")
    CHANNELS.register(cls, key, owner=owner)
    if BLOCKS.get(cls.__name__) is not cls:
        BLOCKS.register(cls, cls.__name__, owner=owner)
    return cls


def channel_class(name: str) -> type[Channel]:
    """The channel class registered as ``name`` (``"quantizer"``, ``"jpeg"``), or by its
    class name (``"Quantizer"``, as JSON configs name it).

    Raises ``ValueError`` listing the registered channels otherwise."""
    cls: Any = CHANNELS.get(name)
    if cls is None:
        cls = next((c for c in CHANNELS.values() if c.__name__ == name), None)
    if cls is None:
        raise ValueError(
            f"unknown channel {name[:40]!r}; channels: {', '.join(sorted(CHANNELS)) or 'none'}"
        )
    return cls


def build_channel(spec: str | Mapping[str, Any] | Channel, embedding_dims: Any) -> Channel:
    """A channel for an embedding of shape ``embedding_dims`` ``(c_e, h, w)`` from a name
    (``"quantizer"``, ``"jpeg"``), a table ``{"type": name, **arguments}`` (as ``--set
    channel=jpeg --set channel.quality=70-95`` gives) or a channel itself.

    Raises ``ValueError`` naming the channel for an unknown name or bad arguments."""
    if isinstance(spec, Channel):
        return spec
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("type"), str):
        raise ValueError("channel: expected a name or a table with a 'type'")
    args = {k: v for k, v in spec.items() if k != "type"}
    cls = channel_class(spec["type"])
    try:
        return cls([tuple(embedding_dims)], **args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"channel {spec['type']!r}: {err}") from err


def decoded(
    payloads: Sequence[Payload], values: Sequence[Tensor], dtype: torch.dtype = torch.float32
) -> Tensor:
    """The decoded embeddings of ``payloads`` stacked ``(B, C, h, w)`` as ``dtype``, each
    checked against the shape its payload declares."""
    for payload, value in zip(payloads, values, strict=True):
        if tuple(value.shape) != tuple(payload.shape):
            raise ValueError(
                f"a payload declared the shape {payload.shape} and decoded to {tuple(value.shape)}"
            )
    return torch.stack(list(values)).to(dtype)
