"""A trained model for users: embed real files into one file, restore them from it.

What is written is the payload of the network's channel (:mod:`invblocks.ric.channel`), in
the file the channel writes for the output's suffix: an 8-bit PNG (lossless) or a JPEG for
the quantiser's and the JPEG channel's images, the invblocks bitstream container (``.ibc``)
for an entropy-coded latent. The file carries, in a PNG text chunk, a JPEG comment or the
container's header (``invblocks``), the metadata format, the task, the number of images and
their original size. Inputs of any size are padded (edge replication, right and bottom) to
what the network needs; the embedding keeps the padded size, and restoring crops back to the
original size read from the metadata. The file alone (plus the model) restores the images;
when another program dropped an image's metadata, the original size given by hand does.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._text import nbytes
from ._text import short as _short
from .blocks.dense import set_subnet_dtype
from .checkpoint import load_checkpoint, load_network
from .data import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_images, read_clip
from .io import encode_png, read_image
from .io import write_all as io_write_all
from .metrics import Space
from .ops import to_float
from .plugins import get_task
from .ric.channel import Channel
from .ric.evaluation import evaluate
from .ric.network import RICNet, as_ricnet
from .ric.payload import Payload
from .ric.task import Task
from .runtime import resolve_device, resolve_precision
from .sampling import Sample, SampleRequest
from .tiling import NotTileable, TilePlan, plan, run_nodes
from .tiling import tile_count as tiles_of

__all__ = ["DEFAULT_BUDGET", "Model", "evaluate_images", "load_for_eval", "size_multiple"]

DEFAULT_BUDGET = 2 * 2**30
"""The most memory one pass uses by default, 2 GiB as the estimate counts it (the largest
convolution four times over). Tiles of that size are large enough that their halos cost
little, and a 12-megapixel photograph or a 1080p clip stays within a few GB."""

EMBEDDING_FORMAT = 1
"""The version of an embedding file's metadata (files of invblocks 0.1 have none: 1)."""


def size_multiple(net: RICNet, channels: int, base: int = 1, least: int = 64) -> int:
    """The smallest of ``base``, ``2 base``, ``4 base``, ... (up to ``64 base``) that the
    body's shape inference accepts as the multiple of both sides of a ``channels``-channel
    input (probed at odd multiples of it of at least ``least`` pixels): ``base`` for the
    task's own network, more for a network that downscales further than its task (WIN's
    hiding network squeezes by 2 where hiding keeps the size)."""
    infer = getattr(net.body, "output_dims", None)
    if infer is None:
        return base
    for k in range(7):
        m = base * 2**k
        side = m * (2 * math.ceil(least / (2 * m)) + 1)  # an odd multiple of m
        try:
            for h, w in ((side, side + 2 * m), (side + 2 * m, side)):
                infer([(channels, h, w)])
        except (ValueError, TypeError):
            continue
        return m
    return base


class Model:
    """A task's trained network, loaded from a run or checkpoint folder (:meth:`load`).

    Example::

        model = Model.load("runs/video")
        png = model.embed_files(["f1.png", "f2.png", "f3.png", "f4.png", "f5.png"], "clip.png")
        frames = model.restore_file("clip.png", "restored/")

    Arguments:
        task: The task the network was trained for.
        net: The network, a :class:`~invblocks.ric.network.RICNet` (another invertible network is
            wrapped in one with the default 8-bit channel); put in eval mode.
        n_inputs: Images per embedding.
        meta: The checkpoint's metadata.
        channels_last: Run in channels-last layout (weights and inputs). ``None`` (default):
            on when the network runs on the CPU, where oneDNN's convolutions are faster in it
            (the benchmarks page measures it). The layout changes results only by float
            rounding.
        device: Where the network runs: ``"auto"`` (the GPU when PyTorch sees one, else the
            CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (:func:`~invblocks.runtime.resolve_device`),
            or ``None`` (default) to leave the network where it is. Images go in and come out
            on the CPU whatever the device. An embedding made on one device restores on any
            other; the two devices' float rounding can move a few embedding pixels by one
            8-bit level.
        max_memory: Bytes one pass of the network may use (``None``: half the memory this
            machine has free, at most :data:`~invblocks.model.DEFAULT_BUDGET`). An image that needs
            more is embedded and restored in tiles (:mod:`invblocks.tiling`): the same result, up to
            float rounding, in less memory, with a progress bar on a terminal (``progress = False``
            hides it).
        precision: ``"float32"`` (default), ``"bfloat16"``: the couplings' subnets run in
            bfloat16 (their affine arithmetic and the linear blocks stay float32, so the
            round trip stays within about 1e-3 instead of autocast's 0.06:
            :func:`~invblocks.blocks.dense.set_subnet_dtype`), faster on a CPU
            with bfloat16 units or a GPU; ``"auto"``: bfloat16 where the device has them
            (:func:`invblocks.runtime.fast_bfloat16`). An embedding's metadata records it, and
            restoring uses the embedding's precision whatever the model's.
    """

    def __init__(
        self,
        task: Task,
        net: nn.Module,
        n_inputs: int,
        meta: dict[str, Any],
        *,
        channels_last: bool | None = None,
        device: str | torch.device | None = None,
        max_memory: int | None = None,
        precision: str = "float32",
    ) -> None:
        net = as_ricnet(net, image_channels=task.image_channels)
        if device is not None:
            net.to(resolve_device(device))
        first = next(net.parameters(), None)
        self.device = first.device if first is not None else torch.device("cpu")
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        self.channels_last = channels_last
        if channels_last:
            net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.task, self.n_inputs, self.meta = task, n_inputs, meta
        self.net: RICNet = net.eval()
        self.precision = resolve_precision(precision, self.device)
        set_subnet_dtype(self.net, torch.bfloat16 if self.precision == "bfloat16" else None)
        self.max_memory = max_memory
        self.progress = True
        self._probe_bytes_per_pixel: float | None = None
        self._tile_plan: TilePlan | None = None
        self.multiple = size_multiple(
            self.net, task.image_channels * n_inputs, task.multiple, max(64, task.min_crop)
        )

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.net.parameters())
        step = self.meta.get("step")
        trained = f", step={step}" if step is not None else ""
        return (
            f"Model(task={self.task.name!r}, n_inputs={self.n_inputs}{trained}, "
            f"parameters={params:,}, device={str(self.device)!r}, "
            f"channels_last={self.channels_last})"
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        channels_last: bool | None = None,
        device: str | torch.device | None = "auto",
        task: Task | None = None,
        max_memory: int | None = None,
        precision: str = "float32",
    ) -> Model:
        """Load from a run folder (its latest checkpoint) or a checkpoint folder, onto
        ``device`` (default ``"auto"``: the GPU when PyTorch sees one, else the CPU).
        ``task``: the task object, for a run of a task that is not registered (one defined
        in a notebook); by default the registered task the checkpoint names.
        ``max_memory``, ``precision``: as in :class:`Model`."""
        return cls(
            *load_for_eval(path, task),
            channels_last=channels_last,
            device=device,
            max_memory=max_memory,
            precision=precision,
        )

    def _layout(self, x: Tensor) -> Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H, W)`` the network runs ``height x width`` images at: each side padded up to
        ``self.multiple`` (the task's ``multiple``, or the network's where that is larger:
        :func:`size_multiple`), and to at least the task's ``min_crop`` (the smallest size
        its network accepts)."""
        m = self.multiple
        least = -(-self.task.min_crop // m) * m

        def side(n: int) -> int:
            return max(-(-int(n) // m) * m, least)  # integers: any size, no float overflow

        return side(height), side(width)

    def embedded_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H, W)`` of the embedding of ``height x width`` images: :meth:`padded_size`
        divided by the task's ``scale``."""
        ph, pw = self.padded_size(height, width)
        return ph // self.task.scale, pw // self.task.scale

    def pad(self, x: Tensor) -> Tensor:
        """The stacked images ``(n*C, H, W)`` as the network runs them: ``(1, n*C, H', W')``
        padded on the right and bottom by edge replication to :meth:`padded_size`."""
        h, w = x.shape[-2:]
        ph, pw = self.padded_size(h, w)
        return F.pad(x[None], (0, pw - w, 0, ph - h), mode="replicate")

    def memory_estimate(self, height: int, width: int) -> int:
        """Bytes embedding or restoring ``height x width`` images needs, about: the largest
        convolution's input and output, measured on a small probe and scaled to the padded
        size, times a safety factor for what else is alive at that moment."""
        if self._probe_bytes_per_pixel is None:
            ph, pw = self.padded_size(16, 16)
            largest = 0

            def hook(module: nn.Module, args: Any, output: Any) -> None:
                nonlocal largest
                inputs = sum(a.numel() * a.element_size() for a in args if isinstance(a, Tensor))
                if isinstance(output, Tensor):
                    largest = max(largest, inputs + output.numel() * output.element_size())

            handles = [
                m.register_forward_hook(hook) for m in self.net.modules() if not list(m.children())
            ]
            try:
                x = torch.zeros(1, self.n_inputs * self.task.image_channels, ph, pw)
                with torch.no_grad():
                    self.net([self._layout(x)])
            finally:
                for handle in handles:
                    handle.remove()
            self._probe_bytes_per_pixel = largest / (ph * pw)
        ph, pw = self.padded_size(height, width)
        return self._bytes(ph, pw)

    def _bytes(self, height: int, width: int) -> int:
        """:meth:`memory_estimate` of an input already of a size the network takes."""
        if self._probe_bytes_per_pixel is None:
            self.memory_estimate(16, 16)
        assert self._probe_bytes_per_pixel is not None
        return int(4 * self._probe_bytes_per_pixel * height * width)

    def budget(self) -> int | None:
        """Bytes one pass may use: ``max_memory``, else half of what this machine has
        free, at most :data:`~invblocks.model.DEFAULT_BUDGET` (``None`` where the free memory cannot
        be read:
        nothing is tiled)."""
        if self.max_memory is not None:
            return self.max_memory
        free = available_memory()
        return None if free is None else min(free // 2, DEFAULT_BUDGET)

    def tile_plan(self) -> TilePlan:
        """How this network is tiled (:func:`invblocks.tiling.plan`, measured once);
        ``ValueError`` in one sentence when it cannot be tiled exactly."""
        if self._tile_plan is None:
            channels = self.n_inputs * self.task.image_channels
            try:
                self._tile_plan = plan(self.net.body, channels, self.multiple)
            except NotTileable as err:
                raise ValueError(f"{err}; give it more memory (--max-memory)") from None
        return self._tile_plan

    def _tile_side(self, halo: int, unit: int, at: float, budget: int) -> int:
        """The largest tile (pixels of the tensor tiled, a multiple of ``unit``, ``at``
        full-resolution pixels per such pixel) whose window with its halo fits in ``budget``
        bytes."""
        ratio = max(1.0, at)
        side = max(unit, -(-halo // (4 * unit)) * unit)  # a core of a quarter of its halo at least
        while self._bytes(*[round((2 * side + 2 * halo) * ratio)] * 2) <= budget:
            side *= 2
        if self._bytes(*[round((side + 2 * halo) * ratio)] * 2) > budget:
            need = self._bytes(*[round((side + 2 * halo) * ratio)] * 2)
            raise ValueError(
                f"not enough memory even for tiles: a tile with its halo needs about "
                f"{nbytes(need)} and {nbytes(budget)} may be used "
                "(--max-memory, or a machine with more memory)"
            )
        return side

    def _run(self, x: Tensor, full: tuple[int, int], inverse: bool) -> Tensor:
        """The embedding of padded stacked images ``x`` ``(1, n*C, H, W)`` (``inverse``: the
        restoration ``(1, n*C, H, W)`` of a received embedding ``x``), for images of padded
        size ``full``: whole when the pass fits the budget, else node by node in tiles
        (:func:`invblocks.tiling.run_nodes`) with a progress bar."""
        budget = self.budget()
        net = self.net
        if budget is None or self._bytes(*full) <= budget:
            return net.restore(self._layout(x)) if inverse else net._embedding(self._layout(x))
        p = self.tile_plan()

        def side(halo: int, unit: int, at: float) -> int:
            return self._tile_side(halo, unit, at, budget)

        total = tiles_of(p, *x.shape[-2:], inverse=inverse, tile_side=side)
        from tqdm import tqdm

        show = self.progress and sys.stderr.isatty()
        with tqdm(total=total, unit="tile", desc="tiles", disable=not show, leave=False) as bar:
            if inverse:
                (e,), _ = net.channel([self._layout(x)], rev=True)
                t = run_nodes(net.body, net._in_embedding(e), p, inverse=True, tile_side=side,
                              prepare=self._layout, progress=bar.update)  # fmt: skip
                return net._out(t)
            t = run_nodes(net.body, net._in(x), p, inverse=False, tile_side=side,
                          prepare=self._layout, progress=bar.update)  # fmt: skip
            return net._embedding_of(t)

    def check_memory(self, height: int, width: int) -> None:
        """``ValueError`` in one sentence, before any work, when ``height x width`` images
        need more memory than this machine (or this process's limit) has free."""
        need, free = self.memory_estimate(height, width), available_memory()
        if free is not None and need > free:
            scale = math.sqrt(free / need)
            fits = f"{int(width * scale)}x{int(height * scale)}"
            raise ValueError(
                f"{width}x{height} images need about {nbytes(need)} here and "
                f"{nbytes(free)} are free: use images of at most about {fits} "
                "(or a machine with more memory)"
            )

    # ---------------------------------------------------------------- tensors
    def _stacked(self, images: Sequence[Tensor]) -> Tensor:
        images = [_as_image(im, "images") for im in images]
        if len(images) != self.n_inputs:
            raise ValueError(f"this model embeds {self.n_inputs} images; received {len(images)}")
        return self.task.stack(images)

    def _embedding(self, x: Tensor) -> Tensor:
        """The body's embedding ``(1, C_e, H_e, W_e)`` of stacked images ``(n*C, H, W)``,
        padded, in tiles when they need more memory than the budget."""
        xp = self.pad(x)
        with torch.no_grad():
            size = (int(xp.shape[-2]), int(xp.shape[-1]))
            return self._run(xp, size, inverse=False)

    def _meta(self, height: int, width: int) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "format": EMBEDDING_FORMAT,
            "task": self.task.name,
            "n_inputs": self.n_inputs,
            "height": int(height),
            "width": int(width),
        }
        if self.precision != "float32":
            meta["precision"] = self.precision
        return meta

    @contextlib.contextmanager
    def _precision(self, precision: str) -> Iterator[None]:
        """Run the subnets in ``precision`` for the block's duration (an embedding's own)."""
        if precision == self.precision:
            yield
            return
        set_subnet_dtype(self.net, torch.bfloat16 if precision == "bfloat16" else None)
        try:
            yield
        finally:
            own = torch.bfloat16 if self.precision == "bfloat16" else None
            set_subnet_dtype(self.net, own)

    def encode(
        self, images: Sequence[Tensor], *, channel: Channel | None = None
    ) -> tuple[Payload, dict[str, Any]]:
        """``n`` images ``(C, H, W)``, floats in ``[0, 1]`` or ``uint8`` values, natural order
        -> what is sent (the payload of ``channel``'s deployment face, default the
        network's channel: 8-bit pixels, a JPEG's bytes, a bitstream) and its metadata."""
        x = self._stacked(images)
        (payload,) = (channel or self.net.channel).encode(self._embedding(x))
        return payload, self._meta(*x.shape[-2:])

    def embed(
        self, images: Sequence[Tensor], *, channel: Channel | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        """``n`` images ``(C, H, W)``, floats in ``[0, 1]`` or ``uint8`` values, natural order
        -> the embedding as the receiver decodes it ``(C_e, H_e, W_e)`` (on the CPU;
        ``(H_e, W_e)`` is :meth:`embedded_size`) and its metadata. ``channel``: send it
        through another channel's deployment face than the network's (e.g.
        ``model.channel_for(".png")`` for the lossless 8-bit embedding of a model trained
        through JPEG)."""
        x = self._stacked(images)
        e = self._embedding(x)
        use = channel or self.net.channel
        embedding = use.decode(use.encode(e), dtype=e.dtype)
        return embedding[0].cpu(), self._meta(*x.shape[-2:])

    def restore(self, embedding: Tensor, meta: dict[str, Any]) -> list[Tensor]:
        """The ``n`` images ``(C, H, W)`` (on the CPU), natural order, original size, from an
        embedding ``(C_e, H_e, W_e)`` of floats in ``[0, 1]`` (any finite floats where the
        channel's embedding is a latent: ``Channel.image_embedding``) and its metadata.

        Raises ``ValueError`` when the metadata is damaged, belongs to another task or input
        count, or does not match the embedding's size (an embedding resized or cropped after
        it was made)."""
        self._check(meta)
        if self.net.channel.image_embedding:
            embedding = _as_image(embedding, "the embedding")
        else:  # a latent: any finite values
            embedding = _as_latent(embedding)
        if embedding.shape[0] != self.net.embed_channels:
            raise ValueError(
                f"expected a ({self.net.embed_channels}, H, W) embedding; "
                f"received {tuple(embedding.shape)}"
            )
        self._check_shape(tuple(embedding.shape), meta)
        full = self.padded_size(meta["height"], meta["width"])
        with torch.no_grad(), self._precision(meta.get("precision", "float32")):
            x = self._run(embedding[None], full, inverse=True)
        x = x[0, :, : meta["height"], : meta["width"]].clamp(0, 1).cpu()
        return self.task.unstack(x, self.n_inputs)

    def decode(
        self, payload: Payload, meta: dict[str, Any], *, channel: Channel | None = None
    ) -> list[Tensor]:
        """The ``n`` images ``(C, H, W)`` restored from a payload (:meth:`encode`) and its
        metadata, through ``channel``'s deployment face (default: the network's)."""
        self._check(meta)
        channel = channel or self.net.channel
        self._check_payload(payload, meta, channel)
        embedding = channel.decode([payload])[0]
        return self.restore(embedding, meta)

    def _check_payload(
        self, payload: Payload, meta: dict[str, Any], channel: Channel, where: str = ""
    ) -> None:
        """Before decoding: refuse a payload whose declared embedding is not the size its
        metadata's images make, or whose decoding needs more memory than is free (a file's
        few bytes can declare an embedding of terabytes)."""
        self._check_shape(payload.shape, meta, where)
        estimate = getattr(channel, "decode_memory", None)  # a duck-typed channel: the default
        shape = tuple(payload.shape)
        need = estimate(shape) if estimate is not None else Channel.decode_memory(channel, shape)
        free = available_memory()
        if free is not None and need > free:
            raise ValueError(
                f"{where}decoding the embedding of {meta['width']}x{meta['height']} images "
                f"needs about {nbytes(need)} and {nbytes(free)} are free "
                "(a machine with more memory, or is the file damaged?)"
            )

    def _check_shape(self, shape: Sequence[int], meta: dict[str, Any], where: str = "") -> None:
        """Refuse an embedding (or a payload declaring one) whose shape ``(C_e, H_e, W_e)`` is
        not what the metadata's images make."""
        expected = (self.net.embed_channels, *self.embedded_size(meta["height"], meta["width"]))
        shape = tuple(shape)
        if shape != expected:

            def size(s: Sequence[int]) -> str:  # width x height, as --size takes it
                if len(s) == 3 and shape[0] == expected[0]:  # the sizes alone differ
                    return f"{s[2]}x{s[1]}"
                return "(" + ", ".join(map(str, s)) + ")"

            raise ValueError(
                f"{where}{meta['width']}x{meta['height']} images embed as {size(expected)}; "
                f"this embedding is {size(shape)}: was it resized or cropped after "
                "embedding, or damaged?"
            )

    def _check(self, meta: dict[str, Any]) -> None:
        try:
            _check_meta(meta)
        except ValueError as err:
            raise ValueError(f"its invblocks metadata is damaged: {err}") from None
        if meta["task"] != self.task.name or meta["n_inputs"] != self.n_inputs:
            raise ValueError(
                f"the embedding was made by task {_short(meta['task'])} with "
                f"{meta['n_inputs']} images; this model is {self.task.name!r} with "
                f"{self.n_inputs}"
            )

    def channel_for(self, path: str | Path, quality: int | None = None) -> Channel:
        """The channel whose deployment face writes and reads a file named ``path`` (by its
        suffix, or a bare suffix such as ``".png"``): the network's channel for its own files,
        or one that carries the same embedding in another file (the 8-bit quantiser's
        embedding as a JPEG at ``quality``). ``ValueError`` naming the suffixes the model
        writes otherwise."""
        text = str(path)
        suffix = text if text.startswith(".") and "/" not in text else Path(path).suffix
        return self.net.channel.for_file(suffix.lower(), quality)

    # ------------------------------------------------------------------ files
    def read_inputs(
        self, paths: Sequence[str | Path], *, start: int = 0, step: int = 1
    ) -> list[Tensor]:
        """The model's ``n`` input images from files: ``n`` image files, or one folder of
        frames, GIF or video (frames ``start``, ``start + step``, ...)."""
        return self.read_item(paths, start=start, step=step)[0]

    def read_item(
        self, paths: Sequence[str | Path], *, start: int = 0, step: int = 1
    ) -> tuple[list[Tensor], dict[str, Any]]:
        """:meth:`read_inputs` and what the task's file reader says of the item (a RAW's
        levels and colour matrix: :class:`~invblocks.ric.task.FileFormat`), ``{}`` for
        images and clips."""
        files = [Path(p) for p in paths]
        formats = self.task.files
        if formats is not None and len(files) == 1 and formats.reads(files[0]):
            if not files[0].is_file():
                raise ValueError(f"{files[0]} is not a file")
            images, info = formats.read(files[0])
            if len(images) != self.n_inputs:
                raise ValueError(
                    f"{files[0]} holds {len(images)} images; this model embeds {self.n_inputs}"
                )
            return list(images), dict(info)
        return self._read_images(files, start=start, step=step), {}

    def _read_images(self, files: list[Path], *, start: int, step: int) -> list[Tensor]:
        n, c = self.n_inputs, self.task.image_channels
        mode = {1: "L", 4: "RGBA"}.get(c, "RGB")
        if len(files) == 1 and files[0].is_dir() and n > 1:
            listed = list_images(files[0])
            if len(listed) == n:  # a folder of the item's n images (a stereo pair, layers)
                files = listed
        if len(files) == 1 and (files[0].is_dir() or files[0].suffix.lower() not in IMAGE_SUFFIXES):
            clip = read_clip(files[0], max_frames=start + (n - 1) * step + 1)
            frames = clip[start::step][:n]
            if len(frames) < n:
                raise ValueError(
                    f"{files[0]} has {clip.shape[0]} frames; {n} frames from frame {start} "
                    f"every {step} are needed"
                )
            return [f.float() / 255 for f in frames]
        if len(files) != n:
            raise ValueError(
                f"task {self.task.name!r} with this model embeds {n} images; "
                f"received {len(files)} files"
            )
        images = [read_image(p, mode=mode) for p in files]
        sizes = {tuple(im.shape) for im in images}
        if len(sizes) > 1:
            listing = ", ".join(
                f"{p.name} {tuple(im.shape[1:])}" for p, im in zip(files, images, strict=True)
            )
            raise ValueError(f"the images must have one size; received {listing}")
        return images

    def items_in(self, folder: str | Path) -> list[Path]:
        """The items of a folder, in natural order, as :meth:`read_inputs` reads each: for a
        model of one image, every image file; for several, every subfolder (the item's
        images, or a clip's frames), video file and GIF."""
        from .data._readers import _natural_key

        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        if self.n_inputs == 1:
            own = self.task.files
            if own is None:
                return list_images(folder)
            found = [
                p
                for p in folder.iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and (own.reads(p) or p.suffix.lower() in IMAGE_SUFFIXES)
            ]
            if not found:
                raise ValueError(
                    f"no items in {folder}: expected images or files ending in "
                    f"{', '.join(own.suffixes)}"
                )
            return sorted(found, key=_natural_key)
        clips = (*VIDEO_SUFFIXES, ".gif")
        found = [
            p
            for p in folder.iterdir()
            if not p.name.startswith(".")
            and (p.is_dir() or (p.is_file() and p.suffix.lower() in clips))
        ]
        if not found:
            raise ValueError(
                f"no items in {folder}: expected folders of {self.n_inputs} images or of a "
                "clip's frames, video files or GIFs"
            )
        return sorted(found, key=_natural_key)

    def embed_files(
        self,
        inputs: Sequence[str | Path],
        output: str | Path,
        *,
        start: int = 0,
        step: int = 1,
        quality: int | None = None,
    ) -> Path:
        """Embed image files (or a clip) into ``output``, written atomically in the file the
        output's suffix names (:meth:`channel_for`): a PNG (``.png``, lossless), a JPEG
        (``.jpg``/``.jpeg`` at ``quality``, default 95), a bitstream (``.ibc``), as the
        model's channel writes them. The metadata restoring needs goes in the file."""
        output = Path(output)
        channel = self.channel_for(output, quality)
        if any(_same_path(output, p) for p in inputs):
            raise ValueError(f"{output} is one of the inputs; refusing to overwrite it")
        images, info = self.read_item(inputs, start=start, step=step)
        payload, meta = self.encode(images, channel=channel)
        if info:
            meta["item"] = info
        return channel.write(payload, output, meta)

    def read_payload(
        self, path: str | Path, *, size: tuple[int, int] | None = None
    ) -> tuple[Payload, dict[str, Any], Channel]:
        """A file written by :meth:`embed_files`: its payload, its metadata (checked against
        this model) and the channel that decodes it.

        ``size`` ``(width, height)``: the original images' size, for an image whose metadata
        another program removed (without it such a file is refused, naming the option).
        """
        path = Path(path)
        try:
            channel = self.channel_for(path)
        except ValueError:
            channel = self.net.channel  # another ending: the channel's own reader decides
        payload, meta = channel.read(path)
        if not meta:
            if size is None:
                raise ValueError(
                    f"{path} carries no invblocks metadata (another program may have removed "
                    "it): give the original images' size with --size WIDTHxHEIGHT"
                )
            meta = self._meta(height=size[1], width=size[0])
        try:
            self._check(meta)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        return payload, meta, channel

    def read_embedding(
        self, path: str | Path, *, size: tuple[int, int] | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        """The embedding a file holds, as the receiver decodes it ``(C_e, H_e, W_e)``, and
        its metadata (:meth:`read_payload`)."""
        payload, meta, channel = self.read_payload(path, size=size)
        self._check_payload(payload, meta, channel, f"{path}: ")
        try:
            return channel.decode([payload])[0], meta
        except ValueError as err:  # the channel's reason, named with the file
            raise ValueError(f"{path}: {err}") from None

    def restore_file(
        self,
        embedding: str | Path,
        out_dir: str | Path,
        *,
        size: tuple[int, int] | None = None,
    ) -> list[Path]:
        """Restore the images from a file written by :meth:`embed_files` (PNG, JPEG,
        bitstream) into ``out_dir`` as ``restored_<i>.png``: all of them or, on any failure,
        none. Where the task writes files of its own kind (its ``files``, a
        :class:`~invblocks.ric.task.FileFormat`) and ``out_dir`` ends in their suffix (``x.dng``),
        the restored item is that one file instead, never over an existing file. ``size`` as in
        :meth:`read_payload`."""
        embedding = Path(embedding)
        image, meta = self.read_embedding(embedding, size=size)
        images = self.restore(image, meta)
        own = self.task.files
        if own is not None and own.suffix is not None and own.write is not None:
            target = Path(out_dir)
            if target.suffix.lower() == own.suffix:
                if _same_path(target, embedding):
                    raise ValueError(f"restoring into {target} would overwrite the input")
                if target.exists():  # the source this item was made from, often
                    raise ValueError(
                        f"{target} exists; refusing to overwrite it (name another file)"
                    )
                info = meta.get("item")
                data = own.write(images, info if isinstance(info, dict) else {})
                return io_write_all([(target, data)])
        outputs = [Path(out_dir) / f"restored_{i}.png" for i in range(len(images))]
        if any(_same_path(p, embedding) for p in outputs):
            raise ValueError(f"restoring into {out_dir} would overwrite the input {embedding}")
        return write_all(images, outputs)


def _same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (symbolic links followed; a link loop is no error)."""
    return os.path.realpath(a) == os.path.realpath(b)


def write_all(images: Sequence[Tensor], paths: Sequence[Path]) -> list[Path]:
    """Write every image as a PNG, all or none (:func:`invblocks.io.write_all`): on any
    failure nothing at ``paths`` has changed."""
    return io_write_all([(p, encode_png(im)) for im, p in zip(images, paths, strict=True)])


def _as_image(image: Any, what: str) -> Tensor:
    """``image`` as floats in ``[0, 1]``: a ``(C, H, W)`` tensor of floats in that range, or
    of ``uint8`` values (divided by 255); anything else raises naming ``what``."""
    if not isinstance(image, Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"expected {what} as (C, H, W) tensors; received {shape}")
    if image.numel() == 0:
        raise ValueError(
            f"expected {what} with pixels; received an empty {tuple(image.shape)} tensor"
        )
    if image.dtype == torch.uint8:
        return to_float(image)
    if not image.is_floating_point():
        raise TypeError(
            f"expected {what} as floating-point values in [0, 1] or uint8 values; received "
            f"{image.dtype}"
        )
    if image.numel():
        lo, hi = float(image.min()), float(image.max())
        if not 0.0 <= lo <= hi <= 1.0:  # NaN fails too
            hint = " (8-bit values: divide by 255)" if hi > 1.5 else " (clamp(0, 1)?)"
            raise ValueError(
                f"expected {what} with values in [0, 1]; received values in [{lo:g}, {hi:g}]{hint}"
            )
    return image.float()  # float16 / float64 images compute in the network's float32


def _as_latent(latent: Any) -> Tensor:
    """A latent ``(C, h, w)`` of finite floats, as float32."""
    if not isinstance(latent, Tensor) or latent.ndim != 3 or not latent.is_floating_point():
        shape = tuple(latent.shape) if isinstance(latent, Tensor) else type(latent).__name__
        raise ValueError(f"expected the latent as a (C, h, w) float tensor; received {shape}")
    if not bool(torch.isfinite(latent).all()):
        raise ValueError("expected the latent with finite values; received NaN or infinity")
    return latent.float()


_META_FIELDS = {"task": str, "n_inputs": int, "height": int, "width": int}
_MAX_SIDE = 1 << 24
"""The largest image side metadata may name (16,777,216 pixels): far beyond any image that
fits in memory, and small enough that every size computation stays exact."""


def _check_meta(meta: Any) -> None:
    """Raise ``ValueError`` naming the field that is wrong unless ``meta`` is an embedding's
    metadata: a dict with ``task`` (str), ``n_inputs`` (a positive int) and ``height``,
    ``width`` (ints in 1..2**24); values are quoted short."""
    if not isinstance(meta, dict):
        raise ValueError(f"expected a JSON object; received a {type(meta).__name__}")
    for key, kind in _META_FIELDS.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"expected {key!r} to be {kind.__name__}; received {_short(value)}")
        if isinstance(value, int) and not 0 < value <= _MAX_SIDE:
            raise ValueError(f"expected {key!r} to be in 1..{_MAX_SIDE}; received {_short(value)}")
    if meta.get("precision", "float32") not in ("float32", "bfloat16"):
        raise ValueError(
            f"expected 'precision' to be float32 or bfloat16; received {_short(meta['precision'])}"
        )
    version = meta.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"expected 'format' to be an int; received {_short(version)}")
    if version > EMBEDDING_FORMAT:
        raise ValueError(
            f"the embedding's metadata format is {_short(version)}; this invblocks reads "
            f"format {EMBEDDING_FORMAT} (a newer invblocks wrote it?)"
        )


def load_for_eval(
    path: str | Path, task: Task | None = None
) -> tuple[Task, RICNet, int, dict[str, Any]]:
    """``(task, network, n_inputs, config)`` from a run, checkpoint or model folder, the
    network in eval mode (``task``: instead of the registered task the folder names)."""
    meta, state, folder = load_checkpoint(path)
    if task is None:
        task = get_task(meta.get("task", "?"))
    elif meta.get("task") != task.name:
        raise ValueError(f"{folder} is a model of task {meta.get('task')!r}, not {task.name!r}")
    net = as_ricnet(load_network(meta, state, str(folder)), image_channels=task.image_channels)
    n = meta.get("n_inputs")
    if not isinstance(n, int) or isinstance(n, bool) or n != net.n_images:
        raise ValueError(
            f"{folder}: its config.json says n_inputs {_short(n)}; its network takes "
            f"{net.n_images} {task.image_channels}-channel images"
        )
    return task, net.eval(), n, meta


def evaluate_images(
    model: Model,
    items: Sequence[Any],
    *,
    limit: int | None = None,
    channel: Channel | None = None,
    ssim_too: bool = True,
    space: Space = "rgb",
    shave: int = 0,
) -> dict[str, float]:
    """The papers' metrics on **whole** held-out items, as a user's files go: each item's
    images (the task's sampler with ``crop=None``) are padded as :meth:`Model.embed` pads,
    embedded, sent through the deployment face of the model's channel (or of ``channel``:
    e.g. a JPEG for a model trained on PNGs), restored and cropped back. ``space`` and
    ``shave``: as the papers measure (:func:`invblocks.ric.evaluation.evaluate`).

    Returns the means of :func:`invblocks.ric.evaluation.evaluate` (``embedding_*``, ``received_*``,
    ``restored_*``, ``baseline_*``, ``received_baseline_*`` with ``channel``, the channel's
    and the task's metrics) and ``items``.
    """
    task, n = model.task, model.n_inputs
    count = len(items) if limit is None else min(limit, len(items))
    if count < 1:
        raise ValueError(f"task {task.name!r}: no held-out items to evaluate")

    def samples() -> Iterator[Tensor | tuple[Tensor, Tensor]]:
        for index in range(count):
            request = SampleRequest(
                items=items,
                index=index,
                n_inputs=n,
                crop=None,
                generator=torch.Generator().manual_seed(index),
                train=False,
                options=task.sampling,
            )
            sample = task.sample(request)
            images = sample.images if isinstance(sample, Sample) else sample
            x = model._stacked(images)
            reference = sample.reference if isinstance(sample, Sample) else None
            yield x if reference is None else (x, reference)

    def forward(xp: Tensor) -> Tensor:
        size = (int(xp.shape[-2]), int(xp.shape[-1]))
        return model._run(xp, size, inverse=False)

    def inverse(e: Tensor) -> Tensor:
        size = (int(e.shape[-2]) * task.scale, int(e.shape[-1]) * task.scale)
        return model._run(e, size, inverse=True)

    means = evaluate(
        task, model.net, samples(), n, channel=channel, pad=model.pad, with_ssim=ssim_too,
        space=space, shave=shave, forward=forward, inverse=inverse,
    )  # fmt: skip
    means["items"] = float(count)
    return means


def available_memory() -> int | None:
    """Bytes this process can still allocate, about: the smallest of the memory the system
    has available, what is left under this process's address-space limit (``ulimit -v``)
    and what is left under its cgroup's limit; ``None`` when none of them can be read."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            used = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            found.append(max(0, soft - used))
    except (ImportError, OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            current = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(max(0, int(limit) - current))
    except (OSError, ValueError):
        pass
    return min(found) if found else None
