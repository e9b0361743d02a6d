"""The 5-convolution dense block used as coupling and relation subnet (IICNet / IRN)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..initializers import conv2d

__all__ = ["DenseBlock", "run_in_dtype", "set_compact_dense", "set_subnet_dtype"]

_aten = torch.ops.aten


class _CompactDense(torch.autograd.Function):
    """The dense block with one feature buffer ``[u; z1..z4]`` kept for backward.

    Plain autograd keeps every concatenation ``[u]``, ``[u; z1]``, ..., ``[u; z1..z4]`` (one
    per convolution) plus the activations; this keeps the buffer alone and runs each
    convolution's backward on a prefix of it. Same arithmetic, same results.
    """

    @staticmethod
    def forward(ctx: Any, u: Tensor, slope: float, *weights: Tensor) -> Tensor:
        ws, bs = weights[0::2], weights[1::2]
        c, g = u.shape[1], ws[0].shape[0]
        layout = torch.channels_last if _channels_last(u) else torch.contiguous_format
        buf = torch.empty(
            (u.shape[0], c + 4 * g, *u.shape[2:]),
            dtype=u.dtype,
            device=u.device,
            memory_format=layout,
        )
        buf[:, :c] = u
        for k in range(4):
            z = F.conv2d(buf[:, : c + k * g], ws[k], bs[k], padding=1)
            buf[:, c + k * g : c + (k + 1) * g] = F.leaky_relu(z, slope)
        ctx.save_for_backward(buf, *ws)
        ctx.c, ctx.g, ctx.slope = c, g, slope
        return F.conv2d(buf, ws[4], bs[4], padding=1)

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> Any:
        buf, *ws = ctx.saved_tensors
        c, g, slope = ctx.c, ctx.g, ctx.slope
        grad_buf = torch.zeros_like(buf)
        grads: list[Tensor | None] = [None] * 10

        def conv_backward(grad: Tensor, inp: Tensor, k: int, need_input: bool) -> None:
            w = ws[k]
            gi, gw, gb = _aten.convolution_backward(
                grad, inp, w, [w.shape[0]], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                [need_input, True, True],
            )  # fmt: skip
            if need_input:
                grad_buf[:, : inp.shape[1]] += gi
            grads[2 * k], grads[2 * k + 1] = gw, gb

        conv_backward(grad_y, buf, 4, True)
        for k in (3, 2, 1, 0):
            lo, hi = c + k * g, c + (k + 1) * g
            grad_z = grad_buf[:, lo:hi]
            grad_z = torch.where(buf[:, lo:hi] > 0, grad_z, grad_z * slope)
            conv_backward(grad_z, buf[:, :lo], k, k > 0 or ctx.needs_input_grad[0])
        return (grad_buf[:, :c], None, *grads)


def _channels_last(t: Tensor) -> bool:
    return (
        t.dim() == 4
        and t.is_contiguous(memory_format=torch.channels_last)
        and not t.is_contiguous()
    )


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return F.conv2d(x, weight, bias, padding=1)


def set_compact_dense(module: nn.Module, value: bool = True) -> int:
    """Set ``compact`` on every :class:`DenseBlock` in ``module``; returns how many."""
    blocks = [m for m in module.modules() if isinstance(m, DenseBlock)]
    for block in blocks:
        block.compact = value
    return len(blocks)


def set_subnet_dtype(module: nn.Module, dtype: torch.dtype | None) -> int:
    """Run every :class:`DenseBlock` in ``module`` under autocast to ``dtype``
    (``torch.bfloat16``; ``None``: in the input's dtype), its output cast back to the input's
    dtype; returns how many. Any other subnet opts in by having a ``compute_dtype`` attribute
    (``None`` by default) that its ``forward`` honours as :class:`DenseBlock`'s does (a
    plugin's subnets: :func:`run_in_dtype`). Every call drops the low-precision copies of
    weights those subnets keep for inference (:func:`run_in_dtype`).

    Dense blocks are the couplings' subnets, nearly all of a RIC network's arithmetic; the
    couplings' affine arithmetic and the invertible linear blocks stay in float32, so the
    inverse of a linear block stays exact. The inverse of a coupling recomputes its subnets
    from inputs known up to float32 rounding, which bfloat16's rounding can turn into a 1/256
    difference: a round trip is not exact to float32 rounding, but far closer than under a
    plain ``torch.autocast`` (which also runs the 1x1 convolutions and their inverses in
    bfloat16; measured in the tests: at least ten times closer)."""
    blocks = [m for m in module.modules() if hasattr(m, "compute_dtype")]
    for block in blocks:
        lock, copies = _side(block)
        with lock:
            copies.clear()  # copies of the weights as they were: made again when needed
        cast(Any, block).compute_dtype = dtype
    return len(blocks)


def run_in_dtype(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    dtype: torch.dtype | None,
    module: nn.Module | None = None,
) -> Tensor:
    """``forward(x)`` computed in ``dtype`` (a subnet's ``compute_dtype``), its output cast
    back to ``x``'s dtype; ``forward(x)`` as it is when ``dtype`` is ``None`` or ``x``'s.

    While gradients are recorded it runs under autocast to ``dtype``. With gradients off
    (inference) and ``module`` given (the subnet whose parameters and buffers ``forward``
    uses, which ``forward`` must not change), ``forward`` runs on ``x`` cast to ``dtype``
    with the module's floating-point parameters and buffers swapped for copies in ``dtype``:
    autocast casts every weight at every call, these copies are made once and kept (beside
    the module: not in its state dict, deep copies or pickles) until a parameter is updated
    in place, replaced or moved, or :func:`set_subnet_dtype` is called. An edit through
    ``Tensor.data`` is not seen (PyTorch counts no version for it): call
    :func:`set_subnet_dtype` after one. The copies take memory beside the float32 weights
    (half as much again for bfloat16). Two threads' inference calls on one module take
    turns (a lock of the module's own); while the copies are swapped in, anything else that
    reads the module's parameters sees them in ``dtype``. Parameters made under
    ``torch.inference_mode`` (which count no versions) run under autocast."""
    if dtype is None or dtype == x.dtype:
        return forward(x)
    if module is None or torch.is_grad_enabled():
        with torch.autocast(x.device.type, dtype=dtype):
            return forward(x).to(x.dtype)
    lock, copies = _side(module)
    with lock:  # the list too: another thread's swap changes the tensors' dtype
        tensors = [
            t
            for t in (*module.parameters(), *module.buffers())
            if t.is_floating_point() and t.dtype != dtype
        ]
        if any(t.is_inference() for t in tensors):
            with torch.autocast(x.device.type, dtype=dtype):
                return forward(x).to(x.dtype)
        key = (dtype, tuple((id(t), t.data_ptr(), t._version, t.device) for t in tensors))
        if copies.get("key") != key:
            copies.clear()
            copies.update(key=key, tensors=[t.detach().to(dtype) for t in tensors])
        originals = [t.data for t in tensors]
        try:
            for t, low in zip(tensors, copies["tensors"], strict=True):
                t.data = low
            return forward(x.to(dtype)).to(x.dtype)
        finally:
            for t, original in zip(tensors, originals, strict=True):
                t.data = original


_SIDE: weakref.WeakKeyDictionary[nn.Module, tuple[Any, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)
_SIDE_LOCK = threading.Lock()


def _side(module: nn.Module) -> tuple[Any, dict[str, Any]]:
    """The module's lock and low-precision copies, kept beside the module (a weak table),
    not in it, so that its state dict, deep copies and pickles do not carry them."""
    with _SIDE_LOCK:
        found = _SIDE.get(module)
        if found is None:
            found = _SIDE[module] = (threading.RLock(), {})
    return found


class DenseBlock(nn.Module):
    """Five 3x3 convolutions with dense connections and LeakyReLU(0.2).

    ``z1 = lrelu(conv1(u))``, ``z2 = lrelu(conv2([u; z1]))``, ..., ``out = conv5([u; z1..z4])``.
    conv1-4 are Xavier-normal times 0.1 with zero bias; conv5 is all zeros, so the block
    outputs zeros at initialisation (couplings and relation modules start as identities).
    When the block's weights are channels-last, its input is brought to that layout first
    (one small copy instead of one per convolution). On the CPU in channels-last layout the
    last two convolutions are split along their inputs instead of reading the two widest
    concatenations (same function up to float rounding, less peak memory: see the benchmarks
    page).

    ``compact = True`` (attribute; :func:`set_compact_dense` sets it on a whole network)
    trains with one feature buffer kept for the backward pass instead of every concatenation:
    several times less saved activation memory per block, the same results, a little more
    time (each convolution copies its prefix of the buffer in the channels-last path;
    ``python -m benchmarks.dense_block`` measures every path, the benchmarks page has the
    figures). Double backward is not supported in that mode.

    Arguments:
        c_in: Input channels.
        c_out: Output channels.
        growth: Channels added by each of conv1-4 (``gc``; 32 in IICNet and WIN).
        generator: Random source for the initialisation.

    Shapes:
        ``(B, c_in, H, W) -> (B, c_out, H, W)``

    Example:
        >>> block = DenseBlock(3, 12)
        >>> block(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 12, 8, 8])
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        growth: int = 32,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("c_in", c_in), ("c_out", c_out), ("growth", growth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"DenseBlock: {name} must be a positive integer; received {value!r}"
                )
        self.c_in, self.c_out, self.growth = c_in, c_out, growth
        self.convs = nn.ModuleList(
            conv2d(c_in + i * growth, growth, 3, init="xavier", scale=0.1, generator=generator)
            for i in range(4)
        )
        self.out = conv2d(c_in + 4 * growth, c_out, 3, init="zeros")
        self.act = nn.LeakyReLU(0.2)
        self.compact = False
        self.compute_dtype: torch.dtype | None = None

    def forward(self, u: Tensor) -> Tensor:
        return run_in_dtype(self._forward, u, self.compute_dtype, self)

    def _forward(self, u: Tensor) -> Tensor:
        if self.out.weight.is_contiguous(memory_format=torch.channels_last):
            # channels-last weights (``module.to(memory_format=torch.channels_last)``): give
            # the concatenations the same layout, or every convolution copies its input
            u = u.contiguous(memory_format=torch.channels_last)
        if self.compact and torch.is_grad_enabled() and self.act.negative_slope >= 0:
            weights = [t for conv in (*self.convs, self.out) for t in (conv.weight, conv.bias)]
            return _CompactDense.apply(u, float(self.act.negative_slope), *weights)
        if u.device.type == "cpu" and _channels_last(u):
            return self._forward_split_tail(u)
        return self._forward_concat(u)

    def _forward_concat(self, u: Tensor) -> Tensor:
        """The block as its definition reads: each convolution reads one concatenation."""
        feats = [u]
        for conv in self.convs:
            feats.append(self.act(conv(torch.cat(feats, dim=1))))
        return self.out(torch.cat(feats, dim=1))

    def _forward_split_tail(self, u: Tensor) -> Tensor:
        """The same block without the two widest concatenations (channels-last on the CPU).

        conv4 and conv5 are linear in their input, so ``conv4([x; z3])`` is computed as
        ``conv4a(x) + conv4b(z3)`` with ``x = [u; z1; z2]`` and conv4's weight split along
        its input channels, and likewise ``conv5([x; z3; z4])``. Same function up to float
        rounding; what it saves is copying ``[u; z1..z3]`` and ``[u; z1..z4]`` pixel by
        pixel, which in channels-last layout costs more than the three extra small
        convolutions, and autograd keeps ``z3`` and ``z4`` instead of those two
        concatenations.
        """
        conv1, conv2, conv3, conv4 = cast("Iterable[nn.Conv2d]", self.convs)
        x = torch.cat([u, self.act(conv1(u))], dim=1)
        x = torch.cat([x, self.act(conv2(x))], dim=1)
        z3 = self.act(conv3(x))
        lo, hi = x.shape[1], x.shape[1] + self.growth
        w4, w5 = conv4.weight, self.out.weight
        z4 = self.act(_conv(x, w4[:, :lo], conv4.bias) + _conv(z3, w4[:, lo:], None))
        return (
            _conv(x, w5[:, :lo], self.out.bias)
            + _conv(z3, w5[:, lo:hi], None)
            + _conv(z4, w5[:, hi:], None)
        )

    def extra_repr(self) -> str:
        return f"{self.c_in} -> {self.c_out}, growth={self.growth}"
