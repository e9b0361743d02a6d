"""A trained model's embed and restore functions outside Python's invblocks: ``torch.export``
programs and ONNX files, checked with onnxruntime.

:func:`export` writes, into one folder, all or none:

- ``embed.pt2``, ``restore.pt2``: :func:`torch.export.export` programs
  (:func:`torch.export.load` reads them);
- ``embed.onnx``, ``restore.onnx``: the same functions as ONNX (``torch.onnx.export`` with
  its dynamo exporter; needs ``onnx`` and ``onnxscript``, the ``export`` extra);
- ``export.json``: what a program needs to call them (the task, the input layout, the size
  multiple) and how they were checked.

``embed`` takes the stacked images ``(B, n*C, H, W)`` (floats in ``[0, 1]``, the task's order,
RGB; ``H`` and ``W`` multiples of ``multiple``) and returns the 8-bit embedding ``(B, C_e, H/s,
W/s)`` as ``uint8``: the pixels of the PNG :meth:`~invblocks.model.Model.embed_files` writes (for a
model trained through a JPEG channel, the pixels before JPEG coding). ``restore`` takes such an
embedding and returns the images ``(B, n*C, H, W)`` in ``[0, 1]``. Padding and cropping to the
multiple, the metadata and the image files are the caller's, as the ``invblocks`` command line
does them. Height and width are dynamic (any multiple of ``multiple`` from ``min_side``) where
the network allows it, else fixed to the example's size, and ``export.json`` says which.

Both run in float32; the invertible linear blocks' inverses are computed once, in float64,
and stored in the programs (ONNX has no matrix inverse).
"""

from __future__ import annotations

import copy
import io
import json
import math
import platform
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .block import Inversion
from .blocks.conv1x1 import InvConv1x1
from .blocks.dense import set_subnet_dtype
from .blocks.wic import WIC
from .ric.network import RICNet

__all__ = ["EXPORT_FORMAT", "Embed", "Restore", "export", "frozen_linear_algebra"]

EXPORT_FORMAT = 1
"""The version of ``export.json``."""

_ONNX_OPSET = 20


class Embed(nn.Module):
    """A RIC network's embedding as a module of one tensor: ``(B, n*C, H, W)`` floats in
    ``[0, 1]`` to the 8-bit embedding ``(B, C_e, H/s, W/s)`` (``uint8``)."""

    def __init__(self, net: RICNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        net = self.net
        (e,), _ = net.body([net._in(x)])
        e = net._out_embedding(e)
        return torch.round(e.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


class Restore(nn.Module):
    """A RIC network's restoration as a module of one tensor: the 8-bit embedding
    ``(B, C_e, h, w)`` (``uint8``) to the images ``(B, n*C, h*s, w*s)`` in ``[0, 1]``."""

    def __init__(self, net: RICNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, e: Tensor) -> Tensor:
        (x,), _ = self.net([e.to(torch.float32) / 255.0], rev=True)
        return x.clamp(0.0, 1.0)


_FROZEN = {
    InvConv1x1: ("inverse_matrix", "log_abs_det"),
    WIC: ("left_inverse", "log_abs_det", "gram_log_det"),
}
"""The methods of the linear blocks that :func:`frozen_linear_algebra` computes once."""


@contextmanager
def frozen_linear_algebra(module: nn.Module) -> Iterator[int]:
    """Within the block, every :class:`~invblocks.blocks.conv1x1.InvConv1x1` and
    :class:`~invblocks.blocks.wic.WIC` in ``module`` uses its inverse matrix and log-determinants
    computed once on entry (the inverses in float64, cast back) instead of computing them at
    each call: the same values, and a graph without matrix inverses and determinants (which
    ONNX lacks). Yields how many blocks; the weights must not change meanwhile."""
    frozen: list[tuple[nn.Module, list[str]]] = []
    try:
        with torch.no_grad():
            for m in module.modules():
                kinds = [v for k, v in _FROZEN.items() if isinstance(m, k)]
                if not kinds:
                    continue
                done: list[str] = []
                frozen.append((m, done))
                for name in kinds[0]:
                    if (
                        name == "log_abs_det"
                        and isinstance(m, WIC)
                        and m.inversion is not Inversion.EXACT
                    ):
                        continue  # only a square WIC has one
                    buffer = f"_frozen_{name}"
                    m.register_buffer(buffer, getattr(m, name)().detach().clone(), persistent=False)
                    # an instance attribute shadows the method
                    m.__dict__[name] = _Frozen(m, buffer)
                    done.append(name)
        yield len(frozen)
    finally:
        for m, done_names in frozen:
            for name in done_names:
                del m.__dict__[name]
                del m._buffers[f"_frozen_{name}"]


class _Frozen:
    """A block's stored value, callable like the method it stands in for."""

    def __init__(self, block: nn.Module, buffer: str) -> None:
        self.block, self.buffer = block, buffer

    def __call__(self) -> Tensor:
        return self.block._buffers[self.buffer]  # type: ignore[return-value]


def _example_side(multiple: int, least: int) -> int:
    """An odd multiple of ``multiple`` of at least ``least`` pixels: tracing at a size that
    is neither 1 nor a power of two keeps the exporter from specialising on it."""
    k = max(1, math.ceil(least / multiple))
    return multiple * (k if k % 2 else k + 1)


def _dynamic(multiple: int, low: int) -> tuple[dict[int, Any]]:
    """The dynamic shape of the one input: any batch, height and width any multiple of
    ``multiple`` from ``low`` of them."""
    from torch.export import Dim

    h = Dim("h", min=low, max=2**16 // max(1, multiple))
    w = Dim("w", min=low, max=2**16 // max(1, multiple))
    if multiple > 1:
        return ({0: Dim("batch", min=1, max=1024), 2: multiple * h, 3: multiple * w},)
    return ({0: Dim("batch", min=1, max=1024), 2: h, 3: w},)


def export(
    model: Any,
    folder: str | Path,
    *,
    onnx: bool = True,
    check: bool = True,
    size: int | None = None,
) -> dict[str, Any]:
    """Write ``model``'s (an :class:`~invblocks.model.Model`) embed and restore functions into
    ``folder`` (see the module) and return what ``export.json`` holds.

    ``onnx``: also the ONNX files (``ImportError`` naming the extra when ``onnx`` or
    ``onnxscript`` is missing); ``check``: run them in onnxruntime (when installed) on an
    example and on a second size, and compare with PyTorch: restored images within 1e-4, the
    8-bit embedding identical on at least 99.99% of its values, else ``ValueError``;
    ``size``: the example's side (default: about 64 pixels, a multiple of the network's).
    Raises ``ValueError`` in one sentence when the network cannot be exported."""
    from .io import write_all

    if onnx:
        _require_onnx()
    task, n = model.task, model.n_inputs
    net = copy.deepcopy(model.net).cpu().float().eval()
    net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    set_subnet_dtype(net, None)  # float32 programs
    multiple, scale = model.multiple, task.scale
    # in multiples of the network's: from the smallest size it takes (sizes 0 and 1 are
    # specialised by the tracer, so at least 2 multiples)
    low = max(2, model.padded_size(1, 1)[0] // multiple)
    side = _example_side(multiple, max(size or 64, low * multiple))
    channels = n * task.image_channels
    x = torch.rand(
        2, channels, side, side + 2 * multiple, generator=torch.Generator().manual_seed(0)
    )
    shape_in = f"(B, {channels}, H, W) float32 in [0, 1], RGB"
    small = "H, W" if scale == 1 else f"H/{scale}, W/{scale}"
    shape_e = f"(B, {net.embed_channels}, {small}) uint8"
    record: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "task": task.name,
        "n_inputs": n,
        "image_channels": task.image_channels,
        "embed_channels": net.embed_channels,
        "multiple": multiple,
        "scale": scale,
        "min_side": low * multiple,
        "embed": {"input": shape_in, "output": shape_e},
        "restore": {"input": shape_e, "output": shape_in},
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    folder = Path(folder)
    files: dict[Path, bytes] = {}
    with torch.no_grad(), frozen_linear_algebra(net):
        embed, restore = Embed(net).eval(), Restore(net).eval()
        for name, module, example, unit in (
            ("embed", embed, x, multiple),
            ("restore", restore, embed(x), multiple // scale),
        ):
            shapes = _dynamic(unit, low)
            program, why = _torch_export(module, example, shapes)
            buffer = io.BytesIO()
            with (
                warnings.catch_warnings()
            ):  # said of weights that share storage; ours are on the CPU
                warnings.filterwarnings("ignore", message="No complete tensor found in the group")
                torch.export.save(program, buffer)
            files[folder / f"{name}.pt2"] = buffer.getvalue()
            record[name]["dynamic"] = why is None
            if why is not None:
                record[name]["fixed_because"] = why
            if onnx:
                files[folder / f"{name}.onnx"] = _onnx_bytes(program, example)
        if onnx:
            record["onnx_opset"] = _ONNX_OPSET
            if check:
                dynamic = record["embed"]["dynamic"] and record["restore"]["dynamic"]
                record["check"] = _check(files, folder, embed, restore, x, multiple, dynamic)
    files[folder / "export.json"] = (json.dumps(record, indent=2) + "\n").encode()
    write_all(list(files.items()))
    return record


def _require_onnx() -> None:
    missing = []
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(
            f"exporting to ONNX needs {' and '.join(missing)}: pip install 'invblocks[export]' "
            "(or export without ONNX)"
        )


def _torch_export(
    module: nn.Module, example: Tensor, shapes: tuple[dict[int, Any]]
) -> tuple[Any, str | None]:
    """The program of ``module`` on ``example``: with the dynamic ``shapes`` where the network
    allows them, else at the example's size, with the tracer's reason (shortened)."""
    from ._text import one_line, short

    try:
        return torch.export.export(module, (example,), dynamic_shapes=shapes), None
    except Exception as err:
        why = short(one_line(str(err)), 200)
    try:
        return torch.export.export(module, (example,)), why
    except Exception as err:
        raise ValueError(
            f"this network cannot be exported with torch.export: {short(one_line(str(err)), 200)}"
        ) from None


def _onnx_bytes(program: Any, example: Tensor) -> bytes:
    """The ``torch.export`` ``program`` as an ONNX model (its dynamic sizes too), serialised."""
    import logging
    import warnings

    from ._text import one_line, short

    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = quiet.level
    try:
        # the exporter's notes on its own internals (torchvision's operators it skips)
        quiet.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program,
                (example,),
                dynamo=True,
                opset_version=_ONNX_OPSET,
                input_names=["x"],
                output_names=["y"],
                verbose=False,
            )
    except Exception as err:
        raise ValueError(
            f"this network cannot be exported to ONNX: {short(one_line(str(err)), 200)}"
        ) from None
    finally:
        quiet.setLevel(level)
    assert onnx_program is not None
    return onnx_program.model_proto.SerializeToString()


def _check(
    files: dict[Path, bytes],
    folder: Path,
    embed: nn.Module,
    restore: nn.Module,
    x: Tensor,
    multiple: int,
    dynamic: bool,
) -> dict[str, Any]:
    """Run the ONNX files in onnxruntime on ``x`` (and, when dynamic, on another size and
    batch) against PyTorch."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"onnxruntime": None}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = {
        name: ort.InferenceSession(
            files[folder / f"{name}.onnx"], options, providers=["CPUExecutionProvider"]
        )
        for name in ("embed", "restore")
    }
    inputs = [x]
    if dynamic:
        h, w = x.shape[-2:]
        g = torch.Generator().manual_seed(1)
        inputs.append(torch.rand(3, x.shape[1], h + 2 * multiple, w - multiple, generator=g))
    worst_restore, identical = 0.0, 1.0
    for xi in inputs:
        e = embed(xi)
        e_onnx = torch.from_numpy(sessions["embed"].run(None, {"x": xi.numpy()})[0])
        identical = min(identical, float((e_onnx == e).float().mean()))
        r = restore(e)
        r_onnx = torch.from_numpy(sessions["restore"].run(None, {"x": e.numpy()})[0])
        worst_restore = max(worst_restore, float((r_onnx - r).abs().max()))
    result = {
        "onnxruntime": ort.__version__,
        "sizes": [list(t.shape) for t in inputs],
        "embed_identical": identical,
        "restore_max_difference": worst_restore,
    }
    if identical < 0.9999 or worst_restore > 1e-4:
        raise ValueError(
            f"the ONNX files compute something else than PyTorch: {identical:.4%} of the 8-bit "
            f"embedding identical, restored images up to {worst_restore:.2g} apart"
        )
    return result
