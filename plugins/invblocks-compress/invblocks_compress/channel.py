"""The entropy-coded channel: a latent quantised and written as a real bitstream.

The channel of a learned codec (Minnen et al. 2018's joint hyperprior, CompressAI's
``Cheng2020Anchor`` entropy model, as Enhanced Invertible Encoding uses it):

.. code-block:: text

    y (B, N, h, w) --h_a--> z (B, N, h/4, w/4) --quantise--> z_hat --h_s--> params (B, 2N, h, w)
    y_hat = quantise(y); ctx = masked 5x5 conv(y_hat)
    (scale, mean) = entropy_parameters(params, ctx)

In training, uniform noise stands in for both roundings (``train_mode="mixed"``: for the
rate only, the synthesis receiving ``y`` rounded around its means with a straight-through
gradient) and the likelihoods of ``y`` and ``z`` are auxiliary outputs (``likelihoods_y``,
``likelihoods_z``) from which the ``rate`` term counts bits. In evaluation and deployment,
``z`` is rounded around its medians and coded with each channel's learned density; ``y`` is
coded as ``round(y - mean)`` with a Gaussian of ``scale`` (rounded up to one of
:data:`~invblocks_compress.entropy.SCALES`), and the receiver starts from
``y_hat = round(y - mean) + mean``. Both streams share one ANS coder (``constriction``),
written in the invblocks bitstream container (``.ibc``).

``context`` chooses how ``y``'s neighbours inform its model: ``"serial"`` (the authors':
every position from the decoded positions above and to the left, so decoding visits them one
by one), ``"checkerboard"`` (half the positions from the hyperprior alone, the other half from
those: two parallel passes) or ``"none"`` (the hyperprior alone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import constriction
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invblocks.block import Dims
from invblocks.ric import Channel, Payload
from invblocks.ric.channel import decoded

from .entropy import SCALES, FactorizedDensity, as_words, gaussian_likelihood, scale_indexes

__all__ = ["CONTEXTS", "TRAIN_MODES", "EntropyCoded", "MaskedConv2d"]

_MIN_MASS = 2.0**-24  # constriction's models give every symbol at least this mass
CONTEXTS: tuple[str, ...] = ("serial", "checkerboard", "none")
TRAIN_MODES: tuple[str, ...] = ("noise", "mixed")


def _mask(kind: str, k: int) -> Tensor:
    r, c = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    m = k // 2
    if kind == "serial":
        live = (r < m) | ((r == m) & (c < m))
    elif kind == "checkerboard":
        live = (r + c - 2 * m) % 2 == 1
    else:
        live = torch.zeros(k, k, dtype=torch.bool)
    return live.to(torch.float32)[None, None]


class MaskedConv2d(nn.Conv2d):
    """A ``k x k`` convolution that sees only the taps its mask keeps: ``"serial"`` (the
    positions before the centre in raster order, PixelCNN's type A), ``"checkerboard"`` (the
    positions of the other colour) or ``"none"``.

    Shapes:
        ``(B, c_in, H, W) -> (B, c_out, H, W)``
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 5, *, kind: str = "serial") -> None:
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        self.mask: Tensor
        self.register_buffer("mask", _mask(kind, kernel))

    def masked_weight(self) -> Tensor:
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias, padding=self.padding)


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


def _subpel(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(_conv(c_in, 4 * c_out), nn.PixelShuffle(2))


def _lengths(pmf: Tensor) -> Tensor:
    """Each row's coded range: up to its last bin with mass (the end bins hold the tails'
    mass, so they never have none)."""
    width = pmf.shape[1]
    return width - torch.argmax(pmf.flip(1).gt(0).to(torch.int8), dim=1)


def _anchors(h: int, w: int, device: torch.device) -> Tensor:
    """``(1, 1, h, w)``: 1 where ``(i + j)`` is even (the checkerboard's first pass)."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None]
    return ((i + j) % 2 == 0).to(torch.float32)[None, None]


class EntropyCoded(Channel):
    """The joint hyperprior entropy model as a channel (see the module).

    Arguments:
        dims_in: The latent's shape ``[(N, h, w)]`` (``h`` and ``w`` multiples of 4).
        context: ``"serial"``, ``"checkerboard"`` or ``"none"``.
        step: The quantisation step in the latent's units: the entropy model sees
            ``y / step`` and the receiver gets its decoded values times ``step`` (1: the
            authors' codec, whose transforms learn their own scale).
        train_mode: The training surrogate of rounding: ``"noise"`` (the authors'), uniform
            noise for both the rate and what the synthesis receives; ``"mixed"``, uniform
            noise for the rate and, for the synthesis, the latent rounded around its
            predicted means as the coder rounds it, with a straight-through gradient (Minnen
            and Singh, 2020), so the synthesis trains on what it will decode.

    Shapes:
        ``(B, N, h, w) -> (B, N, h, w)``
    """

    name: ClassVar[str] = "hyperprior"
    image_embedding: ClassVar[bool] = False
    idempotent = False

    def __init__(
        self,
        dims_in: Any = None,
        *,
        context: str = "serial",
        step: float = 1.0,
        train_mode: str = "noise",
    ) -> None:
        super().__init__(dims_in)
        if not step > 0:
            raise ValueError(f"step must be > 0; received {step!r}")
        if train_mode not in TRAIN_MODES:
            raise ValueError(
                f"train_mode must be one of {', '.join(TRAIN_MODES)}; received {train_mode!r}"
            )
        self.step, self.train_mode = float(step), train_mode
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {', '.join(CONTEXTS)}; received {context!r}")
        n = self.dims_in[0][0] if self.dims_in else 192
        if n < 2 or n % 2:
            raise ValueError(f"the latent's channels must be even; received {n}")
        self.n, self.context = n, context
        act = nn.LeakyReLU
        self.h_a = nn.Sequential(
            _conv(n, n), act(), _conv(n, n), act(), _conv(n, n, 2), act(), _conv(n, n), act(),
            _conv(n, n, 2),
        )  # fmt: skip
        m = n * 3 // 2
        self.h_s = nn.Sequential(
            _conv(n, n), act(), _subpel(n, n), act(), _conv(n, m), act(), _subpel(m, m), act(),
            _conv(m, 2 * n),
        )  # fmt: skip
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(n * 12 // 3, n * 10 // 3, 1), act(),
            nn.Conv2d(n * 10 // 3, n * 8 // 3, 1), act(),
            nn.Conv2d(n * 8 // 3, n * 6 // 3, 1),
        )  # fmt: skip
        self.context_prediction = MaskedConv2d(n, 2 * n, 5, kind=context)
        self.density = FactorizedDensity(n)
        self.z_pmf: Tensor
        self.z_minima: Tensor
        self.z_medians: Tensor
        self.register_buffer("z_pmf", torch.zeros(0, 0, dtype=torch.float64))
        self.register_buffer("z_minima", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("z_medians", torch.zeros(0, dtype=torch.float64))

    # ------------------------------------------------------------------ shapes
    def _output_dims(self, dims: Dims) -> Dims:
        self._check_channels(dims, self.n)
        _, h, w = dims[0]
        if h % 4 or w % 4:
            raise self._shape_error("a latent whose height and width are multiples of 4", dims)
        return [tuple(dims[0])]

    _input_dims = _output_dims

    def _aux_dims(self, dims: Dims) -> dict[str, tuple[int, ...]]:
        n, h, w = dims[0]
        return {"likelihoods_y": (n, h, w), "likelihoods_z": (n, h // 4, w // 4)}

    # ------------------------------------------------------------------ models
    def _weight(self) -> Tensor:
        """A weight of the entropy model: its device and dtype are the model's."""
        return self.context_prediction.weight

    def _gaussian(self, params: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor]:
        scales, means = self.entropy_parameters(torch.cat((params, ctx), dim=1)).chunk(2, dim=1)
        return scales, means

    def _round_z(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(symbols, z_hat)``: ``z`` rounded around the medians, clipped to the coded range."""
        if not self.z_pmf.numel():
            self.finalize()
        med = self.z_medians.to(z)[None, :, None, None]
        lo = -self.z_minima.to(z)[None, :, None, None]
        lengths = _lengths(self.z_pmf).to(z)
        hi = lo + lengths[None, :, None, None] - 1
        symbols = torch.minimum(torch.maximum(torch.round(z - med), lo), hi)
        return symbols, symbols + med

    def _quantize_y(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(symbols, y_hat, scales, means)`` as the deployment face codes ``y`` ``(1, N, h,
        w)``: the serial context position by position, the checkerboard in two passes."""
        if self.context == "none":
            scales, means = self._gaussian(params, torch.zeros_like(params))
            q = torch.round(y - means)
            return q, q + means, scales, means
        if self.context == "checkerboard":
            anchors = _anchors(y.shape[-2], y.shape[-1], y.device).to(y)
            s0, m0 = self._gaussian(params, torch.zeros_like(params))
            q0 = torch.round(y - m0)
            ctx = self.context_prediction((q0 + m0) * anchors)
            s1, m1 = self._gaussian(params, ctx)
            scales = s0 * anchors + s1 * (1 - anchors)
            means = m0 * anchors + m1 * (1 - anchors)
            q = torch.round(y - means)
            return q, q + means, scales, means
        return self._serial(y, params, None)

    def _serial(
        self, y: Tensor | None, params: Tensor, decode: Any
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The authors' serial loop over positions (raster order): the model at each position
        from the positions before it; ``decode(scales, means) -> symbols`` reads symbols
        instead of rounding ``y``."""
        _, n, h, w = params.shape[0], self.n, params.shape[-2], params.shape[-1]
        k = self.context_prediction.kernel_size[0]
        pad = k // 2
        weight = self.context_prediction.masked_weight()
        bias = self.context_prediction.bias
        y_hat = params.new_zeros(1, n, h + 2 * pad, w + 2 * pad)
        q = params.new_zeros(1, n, h, w)
        scales = params.new_zeros(1, n, h, w)
        means = params.new_zeros(1, n, h, w)
        for i in range(h):
            for j in range(w):
                crop = y_hat[:, :, i : i + k, j : j + k]
                ctx = F.conv2d(crop, weight, bias)
                s, m = self._gaussian(params[:, :, i : i + 1, j : j + 1], ctx)
                if decode is None:
                    assert y is not None
                    sym = torch.round(y[:, :, i : i + 1, j : j + 1] - m)
                else:
                    sym = decode(s, m)
                y_hat[:, :, i + pad, j + pad] = (sym + m)[:, :, 0, 0]
                q[:, :, i, j], scales[:, :, i, j], means[:, :, i, j] = (
                    sym[:, :, 0, 0],
                    s[:, :, 0, 0],
                    m[:, :, 0, 0],
                )
        return q, y_hat[:, :, pad : pad + h, pad : pad + w], scales, means

    # ---------------------------------------------------------- training face
    def _noisy(self, x: Tensor) -> Tensor:
        return x + torch.rand_like(x) - 0.5

    def _run(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(y_hat, likelihoods_y, likelihoods_z)``: the training surrogate in training mode;
        in eval mode what the deployment face codes, item by item as it does.

        Always in the entropy model's own dtype, outside any autocast: in bfloat16 a mean of
        100 is off by up to 0.25 and uniform noise on a latent of 100 rounds to whole steps,
        so the rate and its gradients break (a quality-6 codec's gradient norm reached 1e6
        and its training diverged); the model runs at 1/16 of the image's resolution, so
        float32 costs little there."""
        with torch.autocast(y.device.type, enabled=False):
            return self._run_exact(y.to(self._weight().dtype))

    def _run_exact(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not self.training:
            items = [self._deployed(y[i : i + 1]) for i in range(len(y))]
            return tuple(torch.cat(t) for t in zip(*items, strict=True))  # type: ignore[return-value]
        z = self.h_a(y)
        z_hat = self._noisy(z)
        params = self.h_s(z_hat)
        y_hat = self._noisy(y)
        if self.context == "checkerboard":
            anchors = _anchors(y.shape[-2], y.shape[-1], y.device).to(y)
            ctx = self.context_prediction(y_hat * anchors) * (1 - anchors)
        elif self.context == "serial":
            ctx = self.context_prediction(y_hat)
        else:
            ctx = torch.zeros_like(params)
        scales, means = self._gaussian(params, ctx)
        likelihoods = gaussian_likelihood(y_hat - means, scales)
        if self.train_mode == "mixed":
            offset = y - means
            y_hat = means + offset + (torch.round(offset) - offset).detach()
        return y_hat, likelihoods, self.density.likelihood(z_hat)

    def _deployed(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`_run` in eval mode for one item ``(1, N, h, w)``."""
        _, z_hat = self._round_z(self.h_a(y))
        _, y_hat, scales, means = self._quantize_y(y, self.h_s(z_hat))
        return y_hat, gaussian_likelihood(y_hat - means, scales), self.density.likelihood(z_hat)

    def _forward(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        y_hat, _, _ = self._run(xs[0] / self.step)
        return y_hat * self.step, None

    def _forward_aux(self, xs: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> Any:
        y_hat, lik_y, lik_z = self._run(xs[0] / self.step)
        return y_hat * self.step, None, {"likelihoods_y": lik_y, "likelihoods_z": lik_z}

    def _inverse(self, ys: tuple[Tensor, ...], c: tuple[Tensor, ...]) -> tuple[Any, Any]:
        return ys[0], None

    # --------------------------------------------------------- deployment face
    @torch.no_grad()
    def finalize(self) -> None:
        """Solve the hyper-latent densities' quantiles and store their coding tables (so the
        coder's models come from saved numbers, not from arithmetic redone on the receiver)."""
        self.density.solve_quantiles()
        pmf, minima, medians = self.density.coding_tables()
        device = self.density.quantiles.device
        self.z_pmf, self.z_minima, self.z_medians = (
            pmf.to(device),
            minima.to(device),
            medians.to(device),
        )

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        for name in ("z_pmf", "z_minima", "z_medians"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _z_models(self) -> list[Any]:
        pmf = self.z_pmf.cpu().numpy()
        lengths = _lengths(self.z_pmf).tolist()
        return [
            constriction.stream.model.Categorical(pmf[c, : lengths[c]], perfect=False)
            for c in range(self.n)
        ]

    @torch.no_grad()
    def encode(self, e: Tensor) -> list[Payload]:
        """One bitstream per latent ``(B, N, h, w)``: the hyper-latent's symbols, then the
        latent's, in one ANS stream."""
        was = self.training
        self.eval()
        try:
            return [self._encode_one(e[i : i + 1] / self.step) for i in range(len(e))]
        finally:
            self.train(was)

    def _encode_one(self, y: Tensor) -> Payload:
        weight = self._weight()
        y = y.to(weight)
        z = self.h_a(y)
        z_sym, z_hat = self._round_z(z)
        params = self.h_s(z_hat)
        q, _, scales, _ = self._quantize_y(y, params)
        bound = max(1, int(q.abs().max()))
        gauss = constriction.stream.model.QuantizedGaussian(-bound, bound)
        stds = SCALES[scale_indexes(scales).cpu()].numpy()
        coder = constriction.stream.stack.AnsCoder()
        for sym, std in reversed(self._y_chunks(q[0], stds[0])):
            coder.encode_reverse(sym, gauss, np.zeros(len(sym)), std)
        zs = (z_sym[0] + self.z_minima[:, None, None].to(z_sym)).long().cpu().numpy()
        zs = zs.astype(np.int32)
        for c, model in reversed(list(enumerate(self._z_models()))):
            coder.encode_reverse(zs[c].reshape(-1), model)
        data = coder.get_compressed().astype("<u4").tobytes()
        info = {"bound": bound, "context": self.context}
        return Payload(data, tuple(y.shape[1:]), info)

    def _y_chunks(self, q: Tensor, stds: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The latent's symbols and scales in the order the receiver decodes them."""
        sym = q.long().cpu().numpy().astype(np.int32)
        if self.context == "serial":
            _, h, w = sym.shape
            return [(sym[:, i, j].copy(), stds[:, i, j].copy()) for i in range(h) for j in range(w)]
        if self.context == "checkerboard":
            anchors = _anchors(sym.shape[1], sym.shape[2], torch.device("cpu"))[0, 0].bool()
            a = anchors.numpy()
            return [(sym[:, a].reshape(-1), stds[:, a].reshape(-1)),
                    (sym[:, ~a].reshape(-1), stds[:, ~a].reshape(-1))]  # fmt: skip
        return [(sym.reshape(-1), stds.reshape(-1))]

    @torch.no_grad()
    def coded_bits(self, e: Tensor) -> float:
        """The information content in bits of the latents ``e`` ``(B, N, h, w)`` under the
        coder's own models (the table's scales, the stored hyper-latent tables): what their
        bitstreams take, less the coder's last word or two."""
        was = self.training
        self.eval()
        try:
            total = 0.0
            for i in range(len(e)):
                y = (e[i : i + 1] / self.step).to(self._weight())
                z_sym, z_hat = self._round_z(self.h_a(y))
                idx = (z_sym[0] + self.z_minima[:, None, None]).long()
                p_z = self.z_pmf.gather(1, idx.flatten(1))
                q, _, scales, _ = self._quantize_y(y, self.h_s(z_hat))
                std = SCALES.to(q.device)[scale_indexes(scales)]
                upper = 0.5 * torch.erfc(-(q.double() + 0.5) / std * 2**-0.5)
                lower = 0.5 * torch.erfc(-(q.double() - 0.5) / std * 2**-0.5)
                p_y = (upper - lower).clamp_min(_MIN_MASS)  # the coder's smallest mass
                total -= float(torch.log2(p_z.double().clamp_min(_MIN_MASS)).sum())
                total -= float(torch.log2(p_y).sum())
            return total
        finally:
            self.train(was)

    @torch.no_grad()
    def decode(self, payloads: Sequence[Payload], dtype: torch.dtype = torch.float32) -> Tensor:
        """The latents ``y_hat`` ``(B, N, h, w)`` from their bitstreams."""
        was = self.training
        self.eval()
        try:
            values = [self._decode_one(p) * self.step for p in payloads]
            return decoded(payloads, values, dtype)
        finally:
            self.train(was)

    def decode_memory(self, shape: Sequence[int]) -> int:
        """32 MiB and 128 bytes a latent value: the hyper-synthesis, the entropy parameters'
        network and the coder's arrays at the latent's resolution, and what a first decode
        sets up (peaks measured in fresh processes: 12-16 MiB for the smallest latents,
        then 69-118 bytes a value for ``N`` from 32 to 192 and the three contexts; the
        networks' widths are multiples of ``N``)."""
        return 32 * 2**20 + 128 * math.prod(int(n) for n in shape)

    def _decode_one(self, payload: Payload) -> Tensor:
        if not isinstance(payload.data, bytes):
            raise ValueError("an entropy-coded payload holds bytes")
        n, h, w = payload.shape
        if n != self.n or h % 4 or w % 4 or h < 4 or w < 4:
            raise ValueError(
                f"the bitstream declares a ({n}, {h}, {w}) latent; this model's is ({self.n}, "
                "h, w) with h and w multiples of 4"
            )
        context = payload.info.get("context")
        if context != self.context:
            raise ValueError(
                f"the bitstream was coded with the {context!r} context; this model's is "
                f"{self.context!r}"
            )
        bound = payload.info.get("bound")
        if not isinstance(bound, int) or not 1 <= bound <= 1 << 20:
            raise ValueError(f"the bitstream declares a bad symbol bound: {bound!r}")
        if not self.z_pmf.numel():
            self.finalize()
        weight = self._weight()
        device, dtype = weight.device, weight.dtype
        coder = constriction.stream.stack.AnsCoder(as_words(payload.data))
        hz, wz = h // 4, w // 4
        z_sym = torch.stack(
            [
                torch.from_numpy(coder.decode(model, hz * wz).astype(np.int64)).reshape(hz, wz)
                for model in self._z_models()
            ]
        ).to(device)
        minima, medians = self.z_minima[:, None, None], self.z_medians[:, None, None]
        z_hat = ((z_sym - minima).to(dtype) + medians.to(dtype))[None]
        params = self.h_s(z_hat)
        gauss = constriction.stream.model.QuantizedGaussian(-bound, bound)

        def read(scales: Tensor) -> Tensor:
            stds = SCALES[scale_indexes(scales.reshape(-1)).cpu()].numpy()
            symbols = coder.decode(gauss, np.zeros(len(stds)), stds)
            return torch.from_numpy(symbols.astype(np.int64)).to(device, dtype)

        if self.context == "serial":
            _, y_hat, _, _ = self._serial(None, params, lambda s, m: read(s).reshape(m.shape))
        elif self.context == "checkerboard":
            anchors = _anchors(h, w, device).to(dtype)
            a = anchors[0, 0].bool()
            s0, m0 = self._gaussian(params, torch.zeros_like(params))
            q = params.new_zeros(1, n, h, w)
            q[0][:, a] = read(s0[0][:, a]).reshape(n, -1)
            s1, m1 = self._gaussian(params, self.context_prediction((q + m0) * anchors))
            q[0][:, ~a] = read(s1[0][:, ~a]).reshape(n, -1)
            y_hat = q + m0 * anchors + m1 * (1 - anchors)
        else:
            s, m = self._gaussian(params, torch.zeros_like(params))
            y_hat = read(s).reshape(1, n, h, w) + m
        return y_hat[0].float().cpu()

    def extra_repr(self) -> str:
        mode = f", train_mode={self.train_mode!r}" if self.train_mode != "noise" else ""
        return (
            f"N={self.n}, context={self.context!r}, step={self.step:g}{mode}, "
            f"{super().extra_repr()}"
        )
