"""A reversible-image-conversion task: what goes in, what the embedding must look like, losses."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from attrs import validators as v
from torch import Tensor

from .. import _deprecated
from .._text import short
from ..block import Block
from ..data import DataSplit, SampleFn, TaskDataset
from .groups import ParamGroup, group_of_terms
from .losses import LossConfig, LossTerm, Objective
from .network import RICNet, as_ricnet
from .quantizer import TRAIN_MODES, TrainMode
from .verdict import EMBEDDING_TARGET, Verdict

__all__ = [
    "FIT_SAMPLES",
    "FileFormat",
    "FitNetwork",
    "Task",
    "TaskMetric",
    "TrainDefaults",
    "default_display",
    "identity_order",
    "middle_first_order",
    "repeat_reference",
]


def identity_order(n: int) -> list[int]:
    """Slot ``i`` holds input ``i``."""
    return list(range(n))


def middle_first_order(n: int) -> list[int]:
    """IICNet's video order: the middle frame first, then the earlier frames in time order,
    then the later ones (``n=5``: ``[2, 0, 1, 3, 4]``)."""
    mid = n // 2
    return [mid, *range(mid), *range(mid + 1, n)]


def default_display(image: Tensor) -> Tensor:
    """How an input image ``(C, H, W)`` is shown: 1- and 3-channel images as they are, other
    channel counts as the mean of their channels (gray). Tasks with other images (RAW,
    layers with alpha) give their own ``Task.display``."""
    return image if image.shape[-3] in (1, 3) else image.mean(dim=-3, keepdim=True)


def repeat_reference(reference: Tensor, n: int, size: tuple[int, int], channels: int) -> Tensor:
    """The trivial restoration, from the reference alone: the reference upscaled to the
    inputs' size (bicubic) where it is smaller, its one channel repeated where the inputs have
    three (gray as colour), then repeated in every slot: ``(B, n * channels, H, W)``."""
    r = reference
    if tuple(r.shape[-2:]) != tuple(size):
        r = F.interpolate(r, size=tuple(size), mode="bicubic", align_corners=False).clamp(0, 1)
    if r.shape[1] != channels:
        if r.shape[1] != 1:
            raise ValueError(
                f"no trivial restoration of {channels}-channel images from a "
                f"{r.shape[1]}-channel reference; give the task a baseline"
            )
        r = r.expand(-1, channels, -1, -1)
    return r.repeat(1, n, 1, 1)


def _terms(value: Iterable[LossTerm]) -> tuple[LossTerm, ...]:
    return tuple(value)


def _inputs(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    lo, hi = value
    return (int(lo), int(hi))


def _settings(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


TaskMetric = Callable[[list[Tensor], list[Tensor], Tensor, "Tensor | None"], Mapping[str, float]]
"""The type of a task's own evaluation metric, ``f(images, restored, embedding, reference)
-> {name: value}`` for one item: its images and their restorations ``(C, H, W)`` in natural order,
the embedding as received ``(c_e, h, w)``, and the reference (``None`` without one)."""

FitNetwork = Callable[[Tensor, "Tensor | None", Mapping[str, Any]], Mapping[str, Any]]
"""The type of a task's data-fitted start (``Task.fit_network``), ``f(x, reference,
settings) -> settings``: training samples ``(B, n*C, crop, crop)``, their references
``(B, embed_channels, ...)`` or ``None``, and the run's network settings; the network settings
to add under the run's."""

FIT_SAMPLES = 32
"""How many training samples ``Task.fit_network`` receives."""


def _metrics(value: Iterable[Any]) -> tuple[TaskMetric, ...]:
    items = tuple(value)
    names = [m for m in items if isinstance(m, str)]
    if names:
        _deprecated.warn(
            f"Task(metrics={names!r}): metric names are deprecated (PSNR and SSIM are always "
            "reported); give functions f(images, restored, embedding, reference) -> "
            "{name: value}",
            stacklevel=5,
        )
    return tuple(m for m in items if not isinstance(m, str))


def _channel_spec(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen(kw_only=True)
class TrainDefaults:
    """A training recipe: a task's defaults for what the training config leaves unset.

    Arguments:
        crop: Training crop size.
        batch: Samples per step.
        optimizer: ``"iicnet"``, ``"win"`` or ``"invcompress"`` (see
            :class:`invblocks.config.TrainConfig`).
        lr: Initial learning rate.
        warmup: Share of the run over which the learning rate rises from 0.
        channel: The channel to train through (a name or a table, as the training config's
            ``channel``; ``None``: the network's own).
        quantizer: Deprecated: ``channel={"type": "quantizer", "train_mode": ...}``.
        network: Settings for the task's network function (``{"blocks": 4}``); the run's
            ``network`` settings are applied over them.
        autocast: ``"bfloat16"`` to train under bfloat16 autocast, ``"auto"`` to train so
            where the device has bfloat16 units and in float32 elsewhere (``None``:
            float32); a run's own ``autocast`` setting wins.
        losses: Loss weights over the task's, by term name.
        sampling: The task's sampling settings over its defaults (``Task.sampling``;
            ``{"frame_step": 1}``).
    """

    crop: int = attrs.field(default=144, validator=v.gt(0))
    batch: int = attrs.field(default=2, validator=v.gt(0))
    optimizer: Literal["iicnet", "win", "invcompress"] = attrs.field(
        default="iicnet", validator=v.in_(("iicnet", "win", "invcompress"))
    )
    lr: float = attrs.field(default=2e-4, validator=v.gt(0))
    warmup: float = attrs.field(default=0.0, validator=[v.ge(0), v.lt(1)])
    channel: str | Mapping[str, Any] | None = attrs.field(
        default=None, converter=_channel_spec, hash=False
    )
    quantizer: TrainMode | None = attrs.field(
        default=None, validator=v.optional(v.in_(TRAIN_MODES))
    )
    network: Mapping[str, Any] = attrs.field(factory=dict, converter=_settings, hash=False)
    autocast: Literal["bfloat16", "auto"] | None = attrs.field(
        default=None, validator=v.optional(v.in_(("bfloat16", "auto")))
    )
    losses: Mapping[str, float] = attrs.field(factory=dict, converter=_settings, hash=False)
    sampling: Mapping[str, Any] = attrs.field(factory=dict, converter=dict, hash=False)

    def __attrs_post_init__(self) -> None:
        if self.quantizer is not None:
            if self.channel is not None:
                raise ValueError("TrainDefaults: give channel or quantizer, not both")
            spec = _deprecated.quantizer_channel(self.quantizer, "TrainDefaults", stacklevel=5)
            object.__setattr__(self, "channel", spec)
            object.__setattr__(self, "quantizer", None)


def _suffixes(value: Any) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    out = tuple(str(s).lower() for s in items)
    if not out or not all(s.startswith(".") and len(s) > 1 for s in out):
        raise ValueError(f"FileFormat: suffixes are endings such as '.dng'; received {value!r}")
    return out


@attrs.frozen(kw_only=True)
class FileFormat:
    """Files of a task's own kind: how ``invblocks embed`` reads an item from one (a camera
    RAW) and how ``invblocks restore`` writes the restored item as one (a DNG).

    Arguments:
        suffixes: The endings of the files ``read`` takes (``(".dng", ".nef")``), lower case;
            other files are read as images, as for every task.
        read: ``f(path) -> (images, info)``: the item's ``n`` images ``(C, H, W)`` in
            ``[0, 1]`` and what the writer needs to write it back (a JSON object: a RAW's
            black and white levels, colour matrix, pattern). ``info`` travels in the
            embedding's metadata (under ``"item"``). Raises ``ValueError`` in one sentence for
            a file it cannot read.
        write: ``f(images, info) -> bytes``: the file of a restored item (``info`` as ``read``
            gave it, ``{}`` for an embedding without it); ``None``: restorations are PNGs.
        suffix: The ending of the files ``write`` makes (``".dng"``); ``restore -o x.dng``
            writes one, any other output is a folder of PNGs.
    """

    suffixes: tuple[str, ...] = attrs.field(converter=_suffixes)
    read: Callable[[Path], tuple[list[Tensor], dict[str, Any]]]
    write: Callable[[list[Tensor], Mapping[str, Any]], bytes] | None = None
    suffix: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.write is None) != (self.suffix is None):
            raise ValueError("FileFormat: give write and suffix together")
        if self.suffix is not None:
            object.__setattr__(self, "suffix", _suffixes(self.suffix)[0])

    def reads(self, path: str | Path) -> bool:
        """Whether ``path`` is a file of this kind (by its ending)."""
        return Path(path).suffix.lower() in self.suffixes


@attrs.frozen(kw_only=True)
class Task:
    """A RIC task, registered by a plugin (see :mod:`invblocks.hookspecs`).

    Arguments:
        name: Unique name (lower case, digits, ``-`` and ``_``).
        description: One line for listings.
        inputs: How many images it embeds: a number or an inclusive range ``(lo, hi)``.
        default_inputs: The number used when none is given.
        image_channels: Channels of each input image.
        embed_channels: Channels of the embedding (3 RGB, 1 grayscale).
        scale: The embedding is ``H/scale x W/scale``.
        multiple: Input sizes (crops, padded images) must be multiples of this: the network's
            needs, including ``scale``.
        min_crop: The smallest image side the default network accepts: training crops must
            be at least this, and :meth:`invblocks.model.Model.embed` pads smaller images up to it.
        sample: ``f(request) -> [image, ...]``: for one
            :class:`~invblocks.sampling.SampleRequest`, the sample's ``n`` images ``(C, H, W)``
            in natural order (e.g. frames in time order). Training samples are random;
            validation samples are ``items[index]``, centre-cropped; ``crop=None`` (validation)
            asks for the whole item (full-image evaluation). A sampler of paired data returns
            a :class:`~invblocks.sampling.Sample` instead: the images and their reference
            (a RAW and the photo its camera rendered).
        default_data: ``f() -> DataSplit``: the built-in default data (installed files only).
        open_data: ``f(path) -> DataSplit``: read a user's data folder (a dataset layout).
        reference: ``f(x, n) -> r``: the reference image the embedding must resemble, from the
            stacked batch ``(B, n*C, H, W)`` (slot 0 is the reference input): ``(B, embed_channels,
            H/scale, W/scale)``. ``None``: the sampler gives the reference with the images
            (paired data), or there is none (a codec's latent resembles nothing; the
            objective then has no embedding term and the evaluation no embedding metric).
        network: ``f(n, /, **overrides) -> RICNet``: the default network for ``n`` inputs (a
            plain invertible network is wrapped in a :class:`~invblocks.ric.network.RICNet` with
            the default 8-bit channel). Take ``n`` positional-only, so that a setting of the
            same name (WIN's width ``n``) reaches the preset.
        order: ``f(n) -> [input index per slot]``: how inputs are stacked (reference first).
        loss_terms: The task's own loss terms (:class:`~invblocks.ric.losses.LossTerm`, e.g. a
            loss in another colour space), weighted in ``losses`` by their names.
        losses: The weights of the loss terms by name (:class:`~invblocks.ric.losses.LossConfig`).
        train: The default recipe (:class:`TrainDefaults`): what ``invblocks train`` uses
            for what the config leaves unset.
        reference_train: The papers' recipe (``recipe="reference"`` in the training
            config): the reference-faithful network and hyper-parameters (default: ``train``).
        recipes: More recipes by name (``--set recipe=NAME``).
        default_recipe: The name that says what the default recipe (``train``) is (hiding's:
            ``"residue"``, a classical hiding that any steganalyst detects); ``recipe=NAME``
            and ``recipe="default"`` both choose it.
        display: ``f(image) -> (1 or 3, H, W)``: how one input image is shown in reports and
            validation samples (:func:`default_display`).
        baseline: ``f(reference, n, (H, W)) -> (B, n*C, H, W)``: the trivial restoration from
            the reference alone, which a useful model must beat (default
            :func:`repeat_reference`: the middle frame for every frame, the left view as the
            right, the cover as the secret, gray as colour, bicubic up for rescaling).
        metrics: The task's own evaluation metrics (:data:`TaskMetric`), reported beside
            PSNR and SSIM by every evaluation.
        param_groups: Parameters trained by optimisers of their own
            (:class:`~invblocks.ric.groups.ParamGroup`; patterns relative to the network).
        extra_losses: Deprecated (0.1): give ``loss_terms`` instead.
        sampling: The settings the sampler reads from
            :attr:`~invblocks.sampling.SampleRequest.options`, with their defaults (video:
            ``{"frame_step": 5}``, the spacing of training frames); a recipe or a run sets
            them by name (``--set sampling.frame_step=1``), and others are refused.
        margin_target: The margin in dB over the trivial restoration (``baseline``) that a
            useful model reaches (default 0: any gain).
        embedding_target: The embedding PSNR in dB against the reference that a useful model
            reaches (default :data:`~invblocks.ric.verdict.EMBEDDING_TARGET`, 30). The
            trainer keeps the checkpoint that is furthest above the nearer of the two targets
            (:meth:`verdict`).
        files: Files of the task's own kind (:class:`FileFormat`): a camera RAW read for
            ``embed``, a DNG written by ``restore``; ``None``: images, clips and PNGs only.
        fit_network: ``f(x, reference, settings) -> settings``: a start fitted to the data
            (the ISP's colour map). Before a new run builds the task's network, the trainer
            calls it with the run's first :data:`FIT_SAMPLES` training samples, stacked
            ``(B, n*C, crop, crop)``, their references (``None`` where the task computes
            them) and the run's network settings; what it returns is added under those
            settings (the run's own win). Not called for ``init=`` or another ``preset``; a
            resume calls it again, so it must be a function of the samples and settings.
        plugin: Set by the registry to the registering plugin's name.
    """

    name: str = attrs.field(validator=v.matches_re(r"^[a-z][a-z0-9_-]*$"))
    description: str
    inputs: tuple[int, int] = attrs.field(converter=_inputs)
    default_inputs: int
    image_channels: int = attrs.field(default=3, validator=v.gt(0))
    embed_channels: int = attrs.field(default=3, validator=v.gt(0))
    scale: int = attrs.field(default=1, validator=v.gt(0))
    multiple: int = attrs.field(default=1, validator=v.gt(0))
    min_crop: int = attrs.field(default=16, validator=v.gt(0))
    sample: SampleFn = attrs.field(converter=_deprecated.request_sampler)
    default_data: Callable[[], DataSplit]
    open_data: Callable[[Path], DataSplit] | None = None
    reference: Callable[[Tensor, int], Tensor] | None = None
    network: Callable[..., Block]
    order: Callable[[int], list[int]] = identity_order
    loss_terms: tuple[LossTerm, ...] = attrs.field(default=(), converter=_terms)
    losses: LossConfig = attrs.field(factory=LossConfig)
    train: TrainDefaults = attrs.field(factory=TrainDefaults)
    reference_train: TrainDefaults | None = None
    display: Callable[[Tensor], Tensor] = default_display
    baseline: Callable[[Tensor, int, tuple[int, int]], Tensor] | None = None
    recipes: Mapping[str, TrainDefaults] = attrs.field(
        factory=dict, converter=_settings, hash=False
    )
    default_recipe: str = attrs.field(
        default="default", validator=v.matches_re(r"^[a-z][a-z0-9_-]*$")
    )
    metrics: tuple[TaskMetric, ...] = attrs.field(default=(), converter=_metrics)
    param_groups: tuple[ParamGroup, ...] = attrs.field(default=(), converter=tuple)
    extra_losses: Callable[..., Mapping[str, Tensor]] | None = None
    sampling: Mapping[str, Any] = attrs.field(factory=dict, converter=_settings, hash=False)
    margin_target: float = 0.0
    embedding_target: float = EMBEDDING_TARGET
    files: FileFormat | None = None
    fit_network: FitNetwork | None = None
    plugin: str = ""

    @inputs.validator
    def _check_range(self, attribute: Any, value: tuple[int, int]) -> None:
        if not 1 <= value[0] <= value[1]:
            raise ValueError(f"task {self.name!r}: inputs must be 1 <= lo <= hi; received {value}")

    def __attrs_post_init__(self) -> None:
        if self.extra_losses is not None:  # 0.1's extra terms: one term, weight 1
            term = _deprecated.extra_losses_term(self.extra_losses)
            object.__setattr__(self, "loss_terms", (*self.loss_terms, term))
            object.__setattr__(self, "losses", self.losses.updated({term.name: 1.0}))
            object.__setattr__(self, "extra_losses", None)
        self.check_inputs(self.default_inputs)
        if self.multiple % self.scale:
            raise ValueError(
                f"task {self.name!r}: multiple {self.multiple} must be a multiple of "
                f"scale {self.scale}"
            )

    def verdict(self, metrics: Mapping[str, float]) -> Verdict:
        """How a model does against this task's targets, from the metrics of one evaluation
        (:func:`~invblocks.ric.evaluation.evaluate`)."""
        return Verdict.of(metrics, self.margin_target, self.embedding_target)

    def check_inputs(self, n: int) -> None:
        """``ValueError`` unless the task embeds ``n`` images."""
        lo, hi = self.inputs
        if not lo <= n <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise ValueError(f"task {self.name!r} embeds {want} images; received {n}")

    def check_sampling(self, options: Mapping[str, Any]) -> None:
        """``ValueError`` unless the task's sampler takes every setting in ``options``, each
        of the type of its default."""
        unknown = sorted(set(options) - set(self.sampling))
        if unknown:
            known = ", ".join(sorted(self.sampling)) or "none"
            raise ValueError(
                f"task {self.name!r} takes the sampling settings: {known}; received "
                f"{', '.join(unknown)}"
            )
        for name, value in options.items():
            default = self.sampling[name]
            if default is not None and type(value) is not type(default):
                raise ValueError(
                    f"task {self.name!r}: sampling.{name} expects a {type(default).__name__} "
                    f"(default {default!r}); received {value!r}"
                )

    def stack(self, images: Sequence[Tensor]) -> Tensor:
        """``n`` images ``(C, H, W)`` (or batches ``(B, C, H, W)``) in natural order, stacked on
        channels in slot order: ``(n*C, H, W)``."""
        n = len(images)
        self.check_inputs(n)
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) != 1:
            raise ValueError(f"task {self.name!r}: images of mixed shapes {sorted(shapes)}")
        shape = next(iter(shapes))
        if shape[-3] != self.image_channels:
            raise ValueError(
                f"task {self.name!r} expects {self.image_channels}-channel images; received {shape}"
            )
        return torch.cat([images[i] for i in self.order(n)], dim=-3)

    def unstack(self, x: Tensor, n: int | None = None) -> list[Tensor]:
        """Inverse of :meth:`stack`: the ``n`` images in natural order."""
        c = self.image_channels
        n = n if n is not None else x.shape[-3] // c
        if x.shape[-3] != n * c:
            raise ValueError(
                f"task {self.name!r}: expected {n * c} channels for {n} images; "
                f"received {tuple(x.shape)}"
            )
        slots = x.split(c, dim=-3)
        out: list[Tensor] = [slots[0]] * n
        for slot, index in enumerate(self.order(n)):
            out[index] = slots[slot]
        return out

    def load_data(self, folder: str | Path | None = None) -> DataSplit:
        """The data a run or an evaluation uses: ``folder`` read by ``open_data``, or the
        task's default data when ``folder`` is ``None``.

        Raises:
            ValueError: a folder for a task that cannot read one.
        """
        if folder is None:
            return self.default_data()
        if self.open_data is None:
            raise ValueError(
                f"task {self.name!r} cannot read a data folder (received {str(folder)!r}); "
                "leave the folder out to use its default data"
            )
        return self.open_data(Path(folder))

    def dataset(
        self,
        source: DataSplit,
        split: Literal["train", "val"],
        *,
        n_inputs: int | None = None,
        crop: int | None = None,
        length: int | None = None,
        seed: int = 0,
        options: Mapping[str, Any] | None = None,
    ) -> TaskDataset:
        """A :class:`~invblocks.data.TaskDataset` over ``source``'s ``split`` items;
        ``options`` are sampling settings over the task's ``sampling``."""
        self.check_sampling(options or {})
        crop = crop if crop is not None else self.train.crop
        if crop < self.min_crop:
            raise ValueError(
                f"task {self.name!r}: crop {crop} is below its minimum {self.min_crop}"
            )
        if crop % self.multiple:
            raise ValueError(
                f"task {self.name!r}: crop {crop} must be a multiple of {self.multiple}"
            )
        items = source.train if split == "train" else source.val
        sides = [min(size) for size in map(_item_size, items) if size is not None]
        small = [side for side in sides if side < crop]
        if small:
            raise ValueError(
                f"task {self.name!r}: {len(small)} of {len(items)} {split} items of "
                f"{source.description} are smaller than the {crop}x{crop} crop (the smallest "
                f"side is {min(small)}); use a smaller crop or leave them out"
            )
        return TaskDataset(
            self,
            items,
            n_inputs=n_inputs or self.default_inputs,
            crop=crop,
            train=split == "train",
            length=length,
            seed=seed,
            options=options,
        )

    def build_network(self, n_inputs: int | None = None, **overrides: Any) -> RICNet:
        """The default network for ``n_inputs`` images (``overrides`` go to the preset), as a
        :class:`~invblocks.ric.network.RICNet`, checked to run: a tiny input goes through its
        body once, so a setting that builds a network that cannot compute (a dense block of
        no channels) is refused here, naming the settings, not at the first training step."""
        n = n_inputs or self.default_inputs
        self.check_inputs(n)
        settings = {k: v for k, v in overrides.items() if k != "generator"}

        def refuse(err: BaseException, what: str) -> ValueError:
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            return ValueError(
                f"task {self.name!r}: its network cannot {what} with the settings "
                f"{short(settings, 120)}: {short(text, 160)[1:-1]}"
            )

        try:
            net = as_ricnet(self.network(n, **overrides), image_channels=self.image_channels)
        except (TypeError, ValueError, ZeroDivisionError, KeyError, AttributeError) as err:
            raise refuse(err, "be built") from err
        side = max(self.min_crop, self.multiple)
        side = -(-side // self.multiple) * self.multiple
        try:
            with torch.no_grad():
                net.body([torch.zeros(1, n * self.image_channels, side, side)])
        except (RuntimeError, ValueError) as err:
            raise refuse(err, "run") from err
        return net

    def recipe(self, name: str = "default") -> TrainDefaults:
        """The training recipe ``name``: ``"default"`` (``train``, also under its name
        ``default_recipe``), ``"reference"`` (``reference_train``, the papers'; the
        default recipe where the task has none), or one of ``recipes``."""
        if name in ("default", self.default_recipe):
            return self.train
        if name == "reference":
            return self.reference_train or self.train
        if name in self.recipes:
            return self.recipes[name]
        known = ", ".join(self.recipe_names())
        raise ValueError(f"task {self.name!r} has the recipes {known}; received {short(name)}")

    def recipe_names(self) -> list[str]:
        """The names :meth:`recipe` takes: the default's (first), ``reference``, the others."""
        names = [self.default_recipe, "reference", *self.recipes]
        return list(dict.fromkeys(n for n in names if n))

    def reference_of(self, x: Tensor, n: int, given: Tensor | None = None) -> Tensor | None:
        """The reference of the stacked batch ``x`` ``(B, n*C, H, W)``: ``given`` (paired
        data) when there is one, else ``reference(x, n)``, else ``None`` (the task has
        none)."""
        if given is not None:
            return given
        return self.reference(x, n) if self.reference is not None else None

    def trivial_restoration(self, x: Tensor, n: int, reference: Tensor | None = None) -> Tensor:
        """The task's trivial restoration of the stacked batch ``x`` ``(B, n*C, H, W)``, from
        its reference alone (``baseline``); ``ValueError`` for a task without one."""
        size = (int(x.shape[-2]), int(x.shape[-1]))
        reference = self.reference_of(x, n, reference)
        if reference is None:
            raise ValueError(f"task {self.name!r} has no reference to restore from")
        return self.restoration_from(reference, n, size)

    def restoration_from(self, reference: Tensor, n: int, size: tuple[int, int]) -> Tensor:
        """The trivial restoration ``(B, n*C, H, W)`` of ``n`` images of ``size`` ``(H, W)``
        from a reference image ``(B, C_r, h, w)`` (``baseline``, or the reference repeated):
        from the reference itself, or from what a receiver holds, e.g. an embedding after a
        JPEG."""
        if self.baseline is not None:
            return self.baseline(reference, n, size)
        return repeat_reference(reference, n, size, self.image_channels)

    def objective(
        self, network: Block | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Objective:
        """The training objective: ``losses`` (with ``overrides``, e.g. from
        ``--set losses.<name>=<weight>``) over the registered loss terms, the task's own
        ``loss_terms`` and the constraints the blocks of ``network`` declare."""
        groups = [*self.param_groups, *getattr(network, "param_groups", list)()]
        return Objective.build(
            self.losses,
            task_terms=self.loss_terms,
            network=network,
            overrides=overrides,
            groups=group_of_terms(groups),
        )


def _item_size(item: Any) -> tuple[int, int] | None:
    """``(H, W)`` of a data item: an image or clip tensor, or the smallest of a tuple of them
    (stereo pairs, layers); ``None`` for other items, which are not checked."""
    if isinstance(item, Tensor) and item.ndim >= 2:
        return (int(item.shape[-2]), int(item.shape[-1]))
    if isinstance(item, tuple | list) and item:
        sizes = [_item_size(part) for part in item]
        if all(size is not None for size in sizes):
            return min((s for s in sizes if s is not None), key=min)
    return None
