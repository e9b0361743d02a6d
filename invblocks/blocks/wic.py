"""WIN's well-posed invertible 1x1 convolution (WIC) and its spatial-shift augmentation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..block import Block, Dims, Inversion
from ..initializers import orthogonal
from ..mixing import channel_mix
from ..registry import register_block

__all__ = ["WIC", "shift", "shift_offsets"]


def shift_offsets(k: int) -> list[tuple[int, int]]:
    """The ``K - 1`` offsets ``(rows, cols)`` WIN uses to stand in for dropped channels.

    ``s = max(ceil(sqrt(K) / 2), 1)``; raster scan ``(i, j)`` over ``[-s, s]^2`` (``i``
    outer), skipping ``(0, 0)``, first ``K - 1`` taken.

    Example:
        >>> shift_offsets(4)
        [(-1, -1), (-1, 0), (-1, 1)]
    """
    s = max(math.ceil(math.sqrt(k) / 2), 1)
    grid = [(i, j) for i in range(-s, s + 1) for j in range(-s, s + 1) if (i, j) != (0, 0)]
    return grid[: k - 1]


def _shift_axis(y: Tensor, n: int, dim: int) -> Tensor:
    if n == 0:
        return y
    size = y.shape[dim]
    kept = y.narrow(dim, 0, size - n) if n > 0 else y.narrow(dim, -n, size + n)
    pad = [0, 0, 0, 0]  # (left, right, top, bottom)
    side = (2 if dim == 2 else 0) + (0 if n > 0 else 1)
    pad[side] = abs(n)
    return F.pad(kept, pad, mode="reflect")


def shift(y: Tensor, rows: int, cols: int) -> Tensor:
    """Shift ``(B, C, H, W)`` by ``rows`` (down if > 0) and ``cols`` (right if > 0).

    The vacated border is filled by reflection padding (``H > 2|rows|``, ``W > 2|cols|``).
    """
    return _shift_axis(_shift_axis(y, rows, 2), cols, 3)


class WIC(Block):
    """Well-posed invertible 1x1 convolution ``v = W u`` with ``W`` of shape ``(M, C_in)``.

    Three cases, by the channel counts:

    * ``C_out == C_in`` (``EXACT``): square ``W``, log-det ``H*W*log|det W|``.
    * ``C_out > C_in`` (``LEFT``): ``M = C_out``; the inverse is the left inverse
      ``W+ = (W^T W)^-1 W^T``, computed by ``torch.linalg.solve`` in float64 on the weight's
      device. The log-det returned is the generalised one, ``H*W*log det(W^T W) / 2``.
    * ``C_out < C_in`` (``AUGMENTED``): ``K = ceil(C_in / C_out)`` and ``M = K*C_out``. The
      block returns ``y = v[:C_out]``, in training and evaluation alike. Its auxiliary output
      ``"augmented"`` (:meth:`~invblocks.block.Block.forward_with_aux`) is all ``M`` channels
      ``v``, ``y`` first, so a loss can pull the extra ones towards shifted copies of the
      target (:meth:`shift_loss`, the ``"shift"`` constraint). The inverse takes ``y``
      (``C_out`` channels), rebuilds ``v~ = [y; S_o1(y); ...; S_o(K-1)(y)]`` from shifted
      copies (:func:`shift_offsets`, reflection padding) and solves ``u = W+ v~``; given all
      ``M`` channels it uses them as they are. Nothing is sampled at random.

    Constraint losses (:meth:`constraint_losses`): ``"gram_det"``, ``|log det(W^T W)|``
    (every case), and, from the auxiliary output, ``"shift"`` (the reducing case).

    ``W`` starts orthogonal (``W^T W = I``), so the left inverse exists at initialisation.

    Arguments:
        dims_in: Input shapes; gives ``in_channels`` when that is not passed.
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        augmented_output: Declare the ``"augmented"`` auxiliary output of the ``AUGMENTED``
            case (without it the block has no auxiliary output and no shift constraint).
        generator: Random source for the orthogonal initialisation.

    Shapes:
        ``(B, C_in, H, W) -> (B, C_out, H, W)``; auxiliary ``"augmented"``: ``(B, M, H, W)``

    References:
        Huang and Huang, "WIN: Variable-Length Reversible Image Conversion with a
        Well-Posed Invertible Network", arXiv 2508.02111.

    Example:
        >>> wic = WIC(in_channels=3, out_channels=8)
        >>> x = torch.rand(1, 3, 4, 4)
        >>> torch.allclose(wic.inverse()(wic(x)), x, atol=1e-6)
        True
    """

    def __init__(
        self,
        dims_in: Any = None,
        *,
        in_channels: int | None = None,
        out_channels: int,
        augmented_output: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(dims_in)
        in_channels = self._channels_from_dims(in_channels, "in_channels")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"WIC: channel counts must be >= 1; received {in_channels} -> {out_channels}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.augmented_output = augmented_output
        if out_channels == in_channels:
            self.inversion, self.k = Inversion.EXACT, 1
        elif out_channels > in_channels:
            self.inversion, self.k = Inversion.LEFT, 1
        else:
            self.inversion = Inversion.AUGMENTED
            self.k = math.ceil(in_channels / out_channels)
        rows = out_channels * self.k
        self.offsets = shift_offsets(self.k)
        self.max_offset = max([max(abs(a), abs(b)) for a, b in self.offsets] + [0])
        self.weight = nn.Parameter(orthogonal(rows, in_channels, generator=generator))
        if self.dims_in:
            self.output_dims(self.dims_in)

    # ----------------------------------------------------------- the algebra
    def gram(self) -> Tensor:
        """``W^T W``, ``(C_in, C_in)``, in the weight's dtype also under autocast (the
        determinant it feeds has no low-precision kernels, and needs none: it is tiny)."""
        with torch.autocast(self.weight.device.type, enabled=False):
            return self.weight.T @ self.weight

    def left_inverse(self) -> Tensor:
        """``W+ = (W^T W)^-1 W^T``, ``(C_in, M)``, solved in float64 and cast back."""
        w = self.weight.double()
        return torch.linalg.solve(w.T @ w, w.T).to(self.weight.dtype)

    def gram_log_det(self) -> Tensor:
        """``log det(W^T W)`` by ``slogdet`` (a scalar)."""
        return torch.linalg.slogdet(self.gram())[1]

    def log_abs_det(self) -> Tensor:
        """``log|det W|`` of a square ``W`` by ``slogdet`` (a scalar)."""
        return torch.linalg.slogdet(self.weight)[1]

    constraint_weights = {"gram_det": 0.1, "shift": 1.0}  # WIN's lambda_det, lambda_shift

    def constraint_losses(
        self, aux: Mapping[str, Tensor] | None = None, target: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``{"gram_det": |log det(W^T W)|}``, zero at the orthogonal initialisation, plus,
        given the ``"augmented"`` auxiliary output, ``{"shift": shift_loss(v, target)}``.

        WIN computes ``|log(det(W^T W) + 1e-6)|`` with ``torch.det`` on the CPU. ``slogdet``
        agrees while ``det >> 1e-6``; near a singular ``W`` it keeps growing (the reference
        saturates at ``|log 1e-6|``), and it does not underflow for large ``C_in``.

        The shift target is ``target`` (WIN: the reference image) when it has this block's
        output shape; otherwise (a reducing WIC inside a network, whose output is not the
        embedding) the block's own output ``v[:C_out]``, detached.
        """
        losses = {"gram_det": self.gram_log_det().abs()}
        v = (aux or {}).get("augmented")
        if v is not None and self.k > 1:
            y = v[:, : self.out_channels]
            if target is None or target.shape != y.shape:
                target = y
            losses["shift"] = self.shift_loss(v, target)
        return losses

    def shift_targets(self, target: Tensor) -> Tensor:
        """``[S_o1(t); ...; S_o(K-1)(t)]`` for a ``(B, C_out, H, W)`` target."""
        self._check_shift_size([tuple(target.shape[1:])])
        return torch.cat([shift(target, a, b) for a, b in self.offsets], dim=1)

    def shift_loss(self, v: Tensor, target: Tensor, loss: str = "l2") -> Tensor:
        """WIN's augmented-variable constraint: ``v[C_out:]`` against shifted ``target``.

        ``v`` is this block's ``"augmented"`` auxiliary output (``M`` channels); ``target``
        what its output should be, the ground-truth reference in WIN (detached here).
        ``loss``: ``"l2"`` (squared error) or ``"charbonnier"`` (``sqrt(d^2 + 1e-6)``);
        summed over ``(C, H, W)``, mean over the batch, as in WIN.
        Zero for the other two cases.
        """
        if self.k == 1:
            return v.new_zeros(())
        extra = v[:, self.out_channels :]
        diff = extra - self.shift_targets(target.detach())
        per = diff.square() if loss == "l2" else torch.sqrt(diff.square() + 1e-6)
        return per.sum(dim=(1, 2, 3)).mean()

    def augment(self, y: Tensor) -> Tensor:
        """``[y; S_o1(y); ...]``: the ``M`` channels the inverse solves from."""
        if self.k == 1:
            return y
        return torch.cat([y, self.shift_targets(y)], dim=1)

    def _check_shift_size(self, dims: Dims) -> None:
        s = self.max_offset
        if dims[0][1] <= 2 * s or dims[0][2] <= 2 * s:
            raise self._shape_error(
                f"height and width > {2 * s} for the shift offsets up to {s} (reflection padding)",
                dims,
            )

    # ------------------------------------------------------------- the block
    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (u,) = xs
        hw = u.shape[2] * u.shape[3]
        if self.inversion is Inversion.AUGMENTED:
            return channel_mix(u, self.weight[: self.out_channels]), None
        v = channel_mix(u, self.weight)
        if self.inversion is Inversion.EXACT:
            return v, self.log_abs_det() * hw
        return v, 0.5 * self.gram_log_det() * hw

    def _forward_aux(
        self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]
    ) -> tuple[Any, Any, Mapping[str, Tensor]]:
        if not self._augments:
            return (*self._forward(xs, c), {})
        v = channel_mix(xs[0], self.weight)  # all M rows once: y and the augmented channels
        return v[:, : self.out_channels], None, {"augmented": v}

    @property
    def _augments(self) -> bool:
        """Whether the block has the ``"augmented"`` auxiliary output."""
        return self.inversion is Inversion.AUGMENTED and self.augmented_output

    def _aux_dims(self, dims: Dims) -> dict[str, tuple[int, ...]]:
        if not self._augments:
            return {}
        _, h, w = self.output_dims(dims)[0]
        return {"augmented": (self.weight.shape[0], h, w)}

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        (v,) = ys
        hw = v.shape[2] * v.shape[3]
        if self.inversion is Inversion.AUGMENTED and v.shape[1] == self.out_channels:
            v = self.augment(v)
        u = channel_mix(v, self.left_inverse())
        if self.inversion is Inversion.EXACT:
            return u, -self.log_abs_det() * hw
        if self.inversion is Inversion.LEFT:
            return u, -0.5 * self.gram_log_det() * hw
        return u, None

    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.in_channels)
        if self.k > 1:
            self._check_shift_size(dims)
        _, h, w = dims[0]
        return [(self.out_channels, h, w)]

    def _input_dims(self, dims: Dims) -> Dims:
        self._check_count(dims, 1, "output")
        c, h, w = dims[0]
        if self.k > 1:
            self._check_shift_size(dims)
        allowed = {self.out_channels, self.out_channels * self.k}
        if c not in allowed:
            raise self._shape_error(
                f"{' or '.join(map(str, sorted(allowed)))} channels in the inverse", dims
            )
        return [(self.in_channels, h, w)]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels} -> {self.out_channels}, W {tuple(self.weight.shape)}, "
            f"K={self.k}, {super().extra_repr()}"
        )


register_block(WIC)
