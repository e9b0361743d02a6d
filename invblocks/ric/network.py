"""The RIC network as one object: an invertible body and the channel the embedding crosses.

.. code-block:: text

    x --body--> e --channel--> r --channel^-1--> --body^-1--> x_hat
    inputs (B, N*C, H, W); embedding e (B, c_e, h, w); r: what the restorer receives

The **body** is any invertible network (a :class:`~invblocks.sequence.Sequence`, a
:class:`~invblocks.graph.Graph`, a FrEIA module through :func:`~invblocks.freia.as_block`).
The **channel** is what happens to the embedding on its way to the restorer, a
:class:`~invblocks.ric.channel.Channel`: the 8-bit :class:`~invblocks.ric.quantizer.Quantizer`
by default, the JPEG channel, an entropy coder. Its training face runs in
:meth:`RICNet.round_trip`; its deployment face (``encode``/``decode``) in :meth:`RICNet.embed`,
:meth:`RICNet.encode` and :meth:`RICNet.decode`.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from .. import _deprecated
from ..block import Block, Dims, Inversion
from ..freia import as_block
from ..registry import block_from_config, config_fields, register_block
from .channel import Channel, channel_class
from .groups import ParamGroup
from .losses import constraint_losses
from .payload import Payload
from .quantizer import Quantizer

__all__ = ["RICNet", "RICResult", "as_ricnet"]

ChannelOrder = Literal["rgb", "bgr"]


@attrs.frozen
class RICResult:
    """One pass of a RIC network in both directions (:meth:`RICNet.round_trip`).

    Arguments:
        embedding: The body's output before the channel ``(B, c_e, h, w)``: what the
            embedding losses compare with the reference (IICNet does so before quantising).
        received: The embedding after the channel: what the restorer starts from.
        restored: The inverse of ``received`` ``(B, N*C, H, W)``.
        aux: The blocks' auxiliary outputs, keyed ``"<module path>.<name>"`` (module paths
            in the RIC network: ``"body.nodes.6.augmented"``, ``"channel.likelihoods"``).
        constraints: The blocks' constraint losses, keyed ``"<module path>.<name>"``
            (:func:`invblocks.ric.losses.constraint_losses`).
        channel_aux: The channel's auxiliary outputs by name (``"likelihoods"``): what
            its training face returns beside the received embedding, for loss terms such
            as a rate.
    """

    embedding: Tensor
    received: Tensor
    restored: Tensor
    aux: Mapping[str, Tensor] = attrs.field(factory=dict)
    constraints: Mapping[str, Tensor] = attrs.field(factory=dict)
    channel_aux: Mapping[str, Tensor] = attrs.field(factory=dict)


class RICNet(Block):
    """A reversible-image-conversion network: ``body`` then ``channel``, and back.

    As a :class:`~invblocks.block.Block` it is FrEIA-call-compatible like any other:
    ``net([x])`` returns the received embedding (``channel(body(x))``; in eval mode with the
    default channel, the 8-bit embedding) and ``net([r], rev=True)`` the restored inputs
    (``body^-1(channel^-1(r))``). For training, :meth:`round_trip` runs both directions at
    once and returns a :class:`RICResult`; for inference, :meth:`embed` and :meth:`restore`.

    Arguments:
        body: The invertible network from the stacked inputs to the embedding (a FrEIA
            module is wrapped with :func:`~invblocks.freia.as_block`). It must know its input
            shape (``dims_in``), as invblocks' containers do.
        channel: What the embedding goes through before it is restored, a
            :class:`~invblocks.ric.channel.Channel`; default
            :class:`~invblocks.ric.quantizer.Quantizer` (8-bit, IICNet's uniform noise in
            training). Its inverse must give back the body's output shape.
        image_channels: Channels of each input image (3 RGB, 1 gray, 4 packed RAW); the
            input ``(B, N*C, H, W)`` holds ``N = C_in / image_channels`` images.
        channel_order: The colour order the network was trained on. ``"bgr"`` (models
            trained on OpenCV-read images, such as IICNet's published ones) flips the
            channels of each 3-channel input image and of a 3-channel embedding at the
            network's boundary, so callers always pass and receive RGB.

    Shapes:
        ``(B, N*C, H, W) -> (B, c_e, h, w)``: the body's; the channel keeps the shape.

    Example:
        >>> from invblocks import Sequence, blocks as B
        >>> body = Sequence(6, 16, 16).append(B.AffineCoupling, split=3)
        >>> body.append(B.ChannelSqueeze, out_channels=3)  # doctest: +ELLIPSIS
        Sequence(...)
        >>> net = RICNet(body).eval()
        >>> x = torch.rand(1, 6, 16, 16)
        >>> net.embed(x).shape, net.restore(net.embed(x)).shape
        (torch.Size([1, 3, 16, 16]), torch.Size([1, 6, 16, 16]))
    """

    def __init__(
        self,
        body: Any,
        channel: Channel | None = None,
        *,
        image_channels: int = 3,
        channel_order: ChannelOrder = "rgb",
    ) -> None:
        body = as_block(body)
        if channel is not None and not isinstance(channel, Channel):
            raise TypeError(
                f"RICNet: the channel must be an invblocks.ric.Channel (a block with a "
                f"deployment face: encode, decode, its payload files); received "
                f"{type(channel).__name__}"
            )
        if not body.dims_in:
            raise ValueError(
                f"RICNet: the body ({body._name()}) must know its input shape; build it with "
                "dims_in (invblocks' Sequence and Graph always do)"
            )
        super().__init__(body.dims_in)
        (out,) = body.output_dims(body.dims_in)  # one embedding tensor
        self.body = body
        self.channel: Channel = channel if channel is not None else Quantizer([out])
        received = self.channel.output_dims([out])
        if [tuple(d) for d in self.channel.input_dims(received)] != [tuple(out)]:
            raise ValueError(
                f"RICNet: the channel {self.channel._name()} maps the embedding {tuple(out)} "
                f"to {received}, and its inverse does not give {tuple(out)} back"
            )
        c_in = body.dims_in[0][0]
        if image_channels < 1 or c_in % image_channels:
            raise ValueError(
                f"RICNet: {c_in} input channels are not a whole number of "
                f"{image_channels}-channel images"
            )
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(
                f"RICNet: channel_order must be 'rgb' or 'bgr'; received {channel_order!r}"
            )
        self.image_channels = image_channels
        self.n_images = c_in // image_channels
        self.embed_channels = int(out[0])
        self.channel_order: ChannelOrder = channel_order
        self.inversion = Inversion.combine([body.inversion, self.channel.inversion])
        self.__dict__["_compiled"] = None  # a plain attribute: see compile_body

    # ------------------------------------------------------------ the block
    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (e,), log_det = self.body([self._in(xs[0])], c=c)
        (r,), _ = self.channel([self._out_embedding(e)])
        return r, log_det

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (e,), _ = self.channel(list(ys), rev=True)
        (x,), log_det = self.body([self._in_embedding(e)], c=c, rev=True)
        return self._out(x), log_det

    def _output_dims(self, dims: Dims) -> Dims:
        return self.channel.output_dims(self.body.output_dims(dims))

    def _input_dims(self, dims: Dims) -> Dims:
        return self.body.input_dims(self.channel.input_dims(dims))

    def _forward_aux(
        self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]
    ) -> tuple[Any, Any, Mapping[str, Tensor]]:
        (e,), log_det, aux = self.body.forward_with_aux([self._in(xs[0])], c)
        (r,), _, channel_aux = self.channel.forward_with_aux([self._out_embedding(e)])
        return r, log_det, {**_prefixed("body", aux), **_prefixed("channel", channel_aux)}

    def _aux_dims(self, dims: Dims) -> dict[str, tuple[int, ...]]:
        embedding = self.body.output_dims(dims)
        return {
            **_prefixed("body", self.body.aux_dims(dims)),
            **_prefixed("channel", self.channel.aux_dims(embedding)),
        }

    # --------------------------------------------------------------- passes
    def round_trip(self, x: Tensor, reference: Tensor | None = None) -> RICResult:
        """Both directions of one training step: ``x`` ``(B, N*C, H, W)`` through the body,
        the channel (its training behaviour in training mode), and back.

        ``reference`` (what the embedding must resemble) is handed to the blocks'
        constraint losses as the target of the block whose output is the embedding (WIN's
        shift constraint). The body runs compiled when :meth:`compile_body` asked for it.
        """
        forward, inverse = self._compiled or (self._body_forward, self._body_inverse)
        e_body, body_aux = forward(self._in(x))
        e = self._out_embedding(e_body)
        (r,), _, channel_aux = self.channel.forward_with_aux([e])
        (back,), _ = self.channel([r], rev=True)
        restored = self._out(inverse(self._in_embedding(back)))
        aux = {**_prefixed("body", body_aux), **_prefixed("channel", channel_aux)}
        target = self._in_embedding(reference) if reference is not None else None
        return RICResult(
            embedding=e,
            received=r,
            restored=restored,
            aux=aux,
            constraints=constraint_losses(self, aux, target),
            channel_aux=dict(channel_aux),
        )

    def encode(self, x: Tensor, channel: Channel | None = None) -> list[Payload]:
        """What is sent for ``x`` ``(B, N*C, H, W)``: the body's embeddings through the
        deployment face of the channel (``channel``: another one, e.g. the JPEG channel
        for a model trained through the 8-bit quantiser), one payload per item. Call
        ``eval()`` first for inference. ``ValueError`` when the body's output is not finite."""
        return (channel or self.channel).encode(self._embedding(x))

    def _embedding(self, x: Tensor) -> Tensor:
        (e,), _ = self.body([self._in(x)])
        return self._embedding_of(e)

    def _embedding_of(self, e: Tensor) -> Tensor:
        """The body's output as an embedding (the images' colour order); ``ValueError`` when
        it is not finite."""
        if not bool(torch.isfinite(e).all()):
            raise ValueError(
                "the network computed NaN or infinite values for these inputs: its weights are "
                "damaged, or the inputs are not images in [0, 1]"
            )
        return self._out_embedding(e)

    def decode(self, payloads: Sequence[Payload], channel: Channel | None = None) -> Tensor:
        """The inputs ``(B, N*C, H, W)`` restored from payloads (:meth:`encode`)."""
        e = (channel or self.channel).decode(payloads, dtype=self._dtype())
        return self.restore(e.to(self._device()))

    def embed(self, x: Tensor, channel: Channel | None = None) -> Tensor:
        """The embedding of ``x`` ``(B, N*C, H, W)`` as the receiver decodes it from what is
        sent ``(B, c_e, h, w)``: ``decode(encode(body(x)))`` of the channel's deployment
        face (``channel``: another one's). With the 8-bit quantiser, the body's output
        clamped and rounded to 256 levels; with the JPEG channel, the JPEG's pixels. Call
        ``eval()`` first for inference."""
        e = self._embedding(x)
        use = channel or self.channel
        return use.decode(use.encode(e), dtype=e.dtype).to(e.device)

    def restore(self, received: Tensor) -> Tensor:
        """The inputs ``(B, N*C, H, W)`` restored from a received embedding ``(B, c_e, h, w)``."""
        (x,), _ = self([received], rev=True)
        return x

    def _device(self) -> torch.device:
        first = next(self.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def _dtype(self) -> torch.dtype:
        first = next((p for p in self.parameters() if p.is_floating_point()), None)
        return first.dtype if first is not None else torch.float32

    # ------------------------------------------------------------- training
    def problems(self) -> list[str]:
        """Why the channel does not suit the body
        (:meth:`~invblocks.ric.channel.Channel.problems`), one sentence
        each; empty when it does."""
        return list(self.channel.problems(self.body))

    def param_groups(self) -> list[ParamGroup]:
        """The parameter groups the channel declares, with their patterns under
        ``channel.`` (:class:`~invblocks.ric.groups.ParamGroup`)."""
        return [g.prefixed("channel") for g in self.channel.param_groups()]

    def finalize(self) -> None:
        """Bring the channel's deployment state up to date
        (:meth:`~invblocks.ric.channel.Channel.finalize`);
        the trainer calls it before every checkpoint."""
        self.channel.finalize()

    def __iter__(self) -> Iterator[Block]:
        """The body's nodes, then the channel: how 0.1 networks were laid out (deprecated:
        read :attr:`body` and :attr:`channel`)."""
        _deprecated.warn(
            "iterating a network's nodes is deprecated: a preset returns a RICNet; read "
            "its body (net.body, a Sequence) and its channel (net.channel)"
        )
        yield from getattr(self.body, "nodes", [self.body])
        yield self.channel

    def _body_forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        (e,), _, aux = self.body.forward_with_aux([x])
        return e, aux

    def _body_inverse(self, e: Tensor) -> Tensor:
        (x,), _ = self.body([e], rev=True)
        return x

    def compile_body(self, **options: Any) -> RICNet:
        """Run :meth:`round_trip`'s two passes through the body with
        :func:`torch.compile` (``options`` are its keyword arguments: ``mode``, ``backend``,
        ``disable``...); returns the network.

        Only the training passes are compiled: calls through the block interface,
        :meth:`embed` and :meth:`restore` (validation, inference) stay eager, so they neither
        compile again for other shapes nor wait for compilation. The channel stays eager
        too. ``compile_body(disable=True)`` undoes it.
        """
        if options.get("disable"):
            self.__dict__["_compiled"] = None
            return self
        self.__dict__["_compiled"] = (
            torch.compile(self._body_forward, **options),
            torch.compile(self._body_inverse, **options),
        )
        return self

    @property
    def _compiled(self) -> Any:
        return self.__dict__.get("_compiled")

    # -------------------------------------------------------- colour order
    def _flip(self, x: Tensor, groups_of_three: bool) -> Tensor:
        """Reverse the channel order within each 3-channel group of ``x`` (BGR <-> RGB)."""
        if self.channel_order == "rgb" or not groups_of_three:
            return x
        b, c, h, w = x.shape
        return x.reshape(b, c // 3, 3, h, w).flip(2).reshape(b, c, h, w)

    def _in(self, x: Tensor) -> Tensor:
        """Inputs as the body takes them (the body's colour order)."""
        return self._flip(x, self.image_channels == 3)

    _out = _in

    def _in_embedding(self, e: Tensor) -> Tensor:
        """An embedding (or a reference) in the body's colour order."""
        return self._flip(e, e.shape[1] % 3 == 0)

    _out_embedding = _in_embedding

    @property
    def dims_out(self) -> list[tuple[int, ...]]:
        """Output shapes, batch excluded, of the received embedding."""
        return self.output_dims(self.dims_in)

    @property
    def embedding_dims(self) -> tuple[int, ...]:
        """The shape of the embedding ``(c_e, h, w)`` for the built input shape."""
        return tuple(self.body.output_dims(self.dims_in)[0])

    # ------------------------------------------------------------ switches
    @property
    def memory_saving(self) -> bool:
        """The body's memory-saving switch (:attr:`invblocks.container.Container.memory_saving`)."""
        return bool(getattr(self.body, "memory_saving", False))

    @memory_saving.setter
    def memory_saving(self, value: bool) -> None:
        if not hasattr(self.body, "memory_saving"):
            raise ValueError(f"RICNet: the body {self.body._name()} has no memory saving")
        self.body.memory_saving = value

    def with_channel(self, channel: Channel) -> RICNet:
        """The same network (shared body and weights) with another channel."""
        return RICNet(
            self.body,
            channel,
            image_channels=self.image_channels,
            channel_order=self.channel_order,
        )

    # ---------------------------------------------------------- inspection
    def summary(self) -> str:
        """The body's summary table, then the channel and the embedding."""
        body = getattr(self.body, "summary", None)
        lines = [body() if callable(body) else repr(self.body)]
        lines.append(
            f"channel: {self.channel._name()}({self.channel.extra_repr()}); embedding "
            f"{tuple(self.body.output_dims(self.dims_in)[0])} from {self.n_images} "
            f"{self.image_channels}-channel image(s)"
            + (", trained on BGR" if self.channel_order == "bgr" else "")
        )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = getattr(self.body, "_repr_html_", None)
        table = body() if callable(body) else f"<pre>{html.escape(repr(self.body))}</pre>"
        channel = html.escape(f"{self.channel._name()}({self.channel.extra_repr()})")
        return f"<div><p><b>RICNet</b>, channel <code>{channel}</code></p>{table}</div>"

    def extra_repr(self) -> str:
        order = ", channel_order='bgr'" if self.channel_order == "bgr" else ""
        return (
            f"{self.n_images} x {self.image_channels}-channel images -> "
            f"{self.embed_channels}-channel embedding{order}, {super().extra_repr()}"
        )

    # ----------------------------------------------------------------- JSON
    def get_config(self) -> dict[str, Any]:
        """The network as JSON-ready data: the body's and the channel's configs, the input
        layout and the colour order."""
        return {
            "type": "RICNet",
            "body": self.body.get_config(),
            "channel": self.channel.get_config(),
            "image_channels": self.image_channels,
            "channel_order": self.channel_order,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RICNet:
        """Rebuild from :meth:`get_config` output (blocks through the registry)."""
        body, channel = config_fields(config, "body", "channel")
        return cls(
            block_from_config(body),
            _channel_from_config(channel),
            image_channels=int(config.get("image_channels", 3)),
            channel_order=config.get("channel_order", "rgb"),
        )


register_block(RICNet)


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in values.items()}


def _channel_from_config(config: Any) -> Channel:
    """A channel from its JSON config: its block config (``{"type": "Quantizer", "args":
    {...}}``), by class name or channel name."""
    if isinstance(config, dict) and isinstance(config.get("type"), str):
        cls = channel_class(config["type"])
        config = {**config, "type": cls.__name__}
    channel = block_from_config(config)
    if not isinstance(channel, Channel):
        raise ValueError(f"the network's channel {type(channel).__name__} is not a Channel")
    return channel


def as_ricnet(net: Any, *, image_channels: int = 3) -> RICNet:
    """``net`` itself when it is a :class:`RICNet`, else ``RICNet(net)`` with the default
    channel (8-bit quantiser), or, for a 0.1 network whose last node is its channel, that
    channel (deprecated)."""
    if isinstance(net, RICNet):
        return net
    body, channel = _deprecated.split_channel(net)
    return RICNet(body, channel, image_channels=image_channels)
