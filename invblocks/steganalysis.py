"""Steganalysis: how detectable a hiding is, with classical detectors and a learned one.

The structural detectors estimate the share of pixels whose least significant bit was
replaced (0 on a cover, about ``r`` on an image with ``r`` of its LSBs replaced), from the
statistics LSB replacement leaves; the chi-square attack tests whether the pairs of values
``2k, 2k + 1`` have been equalised. Each works on 8-bit values ``(H, W)`` or ``(H, W, C)``
(channels pooled or averaged) and returns a score, higher for more stego-like:

* :func:`chi_square`: Westfeld and Pfitzmann, "Attacks on steganographic systems", IH 1999;
  the statistic's Wilson-Hilferty normal score, negated (the p-value underflows on covers).
* :func:`sample_pairs`: Dumitrescu, Wu and Wang, "Detection of LSB steganography via sample
  pair analysis", IEEE TSP 2003 (horizontal and vertical pairs, channels pooled).
* :func:`rs_analysis`: Fridrich, Goljan and Du, "Reliable detection of LSB steganography in
  color and grayscale images", ACM MM&Sec 2001 (mask ``[0, 1, 1, 0]``, channels averaged).
* :func:`weighted_stego`: Fridrich and Goljan, "On estimation of secret message length in LSB
  steganography in spatial domain", SPIE 2004, with Ker and Boehme's predictor and weights
  ("Revisiting weighted stego-image steganalysis", SPIE 2008).

The learned detector is a logistic regression on second-order SPAM features (Pevny, Bas and
Fridrich, "Steganalysis by subtractive pixel adjacency matrix", IEEE TIFS 2010; :func:`spam`),
trained and scored by cross-validation over groups (:func:`learned_scores`). :func:`auc` and
:func:`auc_interval` (a percentile bootstrap over cover/stego pairs) summarise a detector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage, stats

__all__ = [
    "auc",
    "auc_interval",
    "chi_square",
    "learned_scores",
    "lsb_replace",
    "rs_analysis",
    "sample_pairs",
    "spam",
    "weighted_stego",
]


def _channels(x: np.ndarray) -> np.ndarray:
    """``x`` as ``(H, W, C)`` integers."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"expected 8-bit values (uint8); received {x.dtype}")
    return (x[..., None] if x.ndim == 2 else x).astype(np.int64)


def lsb_replace(x: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` (uint8) with the least significant bit of a share ``rate`` of its values replaced
    by random bits: what the structural detectors detect, with a known answer."""
    out = np.asarray(x).copy()
    chosen = rng.random(out.shape) < rate
    bits = rng.integers(0, 2, out.shape, dtype=out.dtype)
    out[chosen] = (out[chosen] & 0xFE) | bits[chosen]
    return out


def chi_square(x: np.ndarray, least: float = 5.0) -> float:
    """The chi-square attack's score: how equal the counts of each pair of values ``2k,
    2k + 1`` are (LSB replacement equalises them). The statistic over the pairs whose expected
    count is at least ``least``, as a standard normal score (Wilson-Hilferty), negated: high
    when the pairs are more equal than chance makes them."""
    counts = np.bincount(_channels(x).ravel(), minlength=256).astype(float)
    even, odd = counts[0::2], counts[1::2]
    expected = (even + odd) / 2
    kept = expected >= least
    df = int(kept.sum()) - 1
    if df < 1:
        return 0.0
    statistic = float(np.sum((even[kept] - expected[kept]) ** 2 / expected[kept]))
    z = ((statistic / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return -z


def _quadratic_root(a: float, b: float, c: float, pick: str) -> float:
    """The root of ``a t^2 + b t + c`` a detector takes (``"small"``: of least value,
    ``"near"``: of least magnitude); the vertex ``-b / 2a`` when there is none (no clamp: a
    clamped estimate ties in an AUC)."""
    if a == 0:
        return -c / b if b else 0.0
    disc = b * b - 4 * a * c
    if disc < 0:
        return -b / (2 * a)
    roots = ((-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a))
    return min(roots) if pick == "small" else min(roots, key=abs)


def sample_pairs(x: np.ndarray) -> float:
    """Sample pair analysis: the estimated share of LSBs replaced, from the counts of
    horizontally and vertically adjacent pairs ``(u, v)`` of each channel, pooled."""
    totals = np.zeros(5)
    for c in np.moveaxis(_channels(x), -1, 0):
        u = np.concatenate([c[:, :-1].ravel(), c[:-1, :].ravel()])
        v = np.concatenate([c[:, 1:].ravel(), c[1:, :].ravel()])
        even = v % 2 == 0
        totals += (
            np.sum((even & (u < v)) | (~even & (u > v))),  # X
            np.sum((even & (u > v)) | (~even & (u < v))),  # Y
            np.sum(u == v),  # Z
            np.sum((u // 2 == v // 2) & (u != v)),  # W
            u.size,  # P
        )
    x_, y_, z_, w_, p_ = totals
    return _quadratic_root((w_ + z_) / 2, 2 * x_ - p_, y_ - x_, "small")


def _regular_singular(c: np.ndarray, mask: Sequence[int]) -> tuple[float, float]:
    """The shares of regular and singular groups (disjoint horizontal groups of
    ``len(mask)`` values) under the flipping ``mask`` (1: F1, ``x ^ 1``; -1: F-1, ``((x + 1)
    ^ 1) - 1``; 0: none)."""
    n = len(mask)
    groups = c[:, : c.shape[1] // n * n].reshape(-1, n)
    flipped = groups.copy()
    for j, m in enumerate(mask):
        if m == 1:
            flipped[:, j] ^= 1
        elif m == -1:
            flipped[:, j] = ((flipped[:, j] + 1) ^ 1) - 1
    before = np.abs(np.diff(groups, axis=1)).sum(axis=1)
    after = np.abs(np.diff(flipped, axis=1)).sum(axis=1)
    return float(np.mean(after > before)), float(np.mean(after < before))


def rs_analysis(x: np.ndarray, mask: Sequence[int] = (0, 1, 1, 0)) -> float:
    """RS analysis: the estimated share of LSBs replaced, from how the regular and singular
    groups change under the mask and its negation, on the image and with every LSB flipped;
    the mean over the channels."""
    estimates = []
    negated = [-m for m in mask]
    for c in np.moveaxis(_channels(x), -1, 0):
        rm, sm = _regular_singular(c, mask)
        rn, sn = _regular_singular(c, negated)
        rm1, sm1 = _regular_singular(c ^ 1, mask)
        rn1, sn1 = _regular_singular(c ^ 1, negated)
        d0, d1, dn0, dn1 = rm - sm, rm1 - sm1, rn - sn, rn1 - sn1
        z = _quadratic_root(2 * (d1 + d0), dn0 - dn1 - d1 - 3 * d0, d0 - dn0, "near")
        estimates.append(z / (z - 0.5) if z != 0.5 else 0.0)
    return float(np.mean(estimates))


_PREDICTOR = np.array([[-1, 2, -1], [2, 0, 2], [-1, 2, -1]], dtype=float) / 4
"""Ker and Boehme's pixel predictor from the 8 neighbours."""


def weighted_stego(x: np.ndarray) -> float:
    """Weighted stego analysis: the estimated share of LSBs replaced,
    ``2 sum_i w_i (s_i - s'_i)(s_i - F(s)_i)`` with ``s'`` the LSB-flipped values, ``F`` the
    neighbours' prediction and weights ``w ~ 1 / (5 + local variance)`` (the interior
    pixels); the mean over the channels."""
    estimates = []
    for c in np.moveaxis(_channels(x), -1, 0):
        s = c.astype(float)
        flipped = (c ^ 1).astype(float)
        predicted = ndimage.correlate(s, _PREDICTOR, mode="nearest")[1:-1, 1:-1]
        around = np.stack([s[:-2, 1:-1], s[2:, 1:-1], s[1:-1, :-2], s[1:-1, 2:]])
        weights = 1.0 / (5.0 + around.var(axis=0))
        weights /= weights.sum()
        inner, inner_flipped = s[1:-1, 1:-1], flipped[1:-1, 1:-1]
        estimates.append(2 * float(np.sum(weights * (inner - inner_flipped) * (inner - predicted))))
    return float(np.mean(estimates))


def _transitions(chains: list[np.ndarray], t: int) -> np.ndarray:
    """Second-order transition probabilities of differences truncated to ``[-t, t]`` along
    ``chains`` (1-D arrays of pixel values): ``(2t+1)^3`` values."""
    k = 2 * t + 1
    counts = np.zeros(k**3)
    for chain in chains:
        d = np.clip(chain[:-1] - chain[1:], -t, t) + t
        if d.size >= 3:
            counts += np.bincount((d[:-2] * k + d[1:-1]) * k + d[2:], minlength=k**3)
    cube = counts.reshape(k, k, k)
    totals = cube.sum(axis=2, keepdims=True)
    return np.divide(cube, totals, out=np.zeros_like(cube), where=totals > 0).ravel()


def spam(x: np.ndarray, t: int = 3) -> np.ndarray:
    """Second-order SPAM features of 8-bit values: the transition probabilities of adjacent
    pixel differences along the 4 straight directions, averaged, then along the 4 diagonal
    ones, averaged (``2 (2t+1)^3`` values: 686 for ``t = 3``); averaged over the channels."""
    features = []
    for c in np.moveaxis(_channels(x), -1, 0):
        rows, cols = list(c), list(c.T)
        h, w = c.shape
        diagonals = [np.diagonal(c, o) for o in range(-(h - 3), w - 2)]
        anti = [np.diagonal(c[:, ::-1], o) for o in range(-(h - 3), w - 2)]
        straight = [rows, [r[::-1] for r in rows], cols, [q[::-1] for q in cols]]
        slanted = [diagonals, [d[::-1] for d in diagonals], anti, [d[::-1] for d in anti]]
        features.append(  # each direction's matrix, the 4 of a kind averaged (the paper's)
            np.concatenate(
                [
                    np.mean([_transitions(chains, t) for chains in straight], axis=0),
                    np.mean([_transitions(chains, t) for chains in slanted], axis=0),
                ]
            )
        )
    return np.mean(features, axis=0)


def _fit_logistic(
    features: np.ndarray, labels: np.ndarray, l2: float
) -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
    """``(mean, std, weights, bias)`` of an L2-penalised logistic regression on standardised
    ``features`` (L-BFGS, float64)."""
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-12
    a = torch.tensor((features - mean) / std, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.float64)
    w = torch.zeros(a.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(a @ w + b, y)
        value = value + l2 * w.square().sum()
        value.backward()
        return value

    opt.step(loss)
    return mean, std, w.detach(), b.detach()


def learned_scores(
    covers: np.ndarray, stegos: np.ndarray, groups: Sequence[int], *, l2: float = 1e-2
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold scores of a learned detector: a logistic regression (standardised
    features, L2 penalty ``l2``, L-BFGS) trained on the features of the covers and stegos of
    every group but one and scored on that group's, for each group in turn (so an image is
    never scored by a detector that saw its scene). ``covers`` and ``stegos``: ``(N, D)``
    features of pairs; ``groups``: each pair's group (its source photograph)."""
    groups_ = np.asarray(groups)
    cover_scores, stego_scores = np.zeros(len(covers)), np.zeros(len(stegos))
    for g in np.unique(groups_):
        train, test = groups_ != g, groups_ == g
        if not train.any():
            raise ValueError("a learned detector needs pairs of at least two groups")
        features = np.concatenate([covers[train], stegos[train]])
        labels = np.concatenate([np.zeros(train.sum()), np.ones(train.sum())])
        mean, std, w, b = _fit_logistic(features, labels, l2)
        for target, f in ((cover_scores, covers[test]), (stego_scores, stegos[test])):
            target[test] = (torch.tensor((f - mean) / std, dtype=torch.float64) @ w + b).numpy()
    return cover_scores, stego_scores


def auc(positives: Sequence[float] | np.ndarray, negatives: Sequence[float] | np.ndarray) -> float:
    """The area under the ROC curve of scores that should be higher for ``positives``
    (stegos) than for ``negatives`` (covers): the Mann-Whitney statistic, ties counting half.

    Example:
        >>> auc([0.9, 0.8], [0.1, 0.8])
        0.875
    """
    pos, neg = np.asarray(positives, float), np.asarray(negatives, float)
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    m, n = len(pos), len(neg)
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def auc_interval(
    cover_scores: Sequence[float] | np.ndarray,
    stego_scores: Sequence[float] | np.ndarray,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(auc, low, high)``: the AUC of paired scores (cover ``i`` and the stego made of it)
    with a percentile bootstrap interval over the pairs. At an AUC of 1 every resample is 1;
    the interval's low end is then the exact bound ``(1 - level) / 2`` to the power ``1 /
    N`` (the chance that ``N`` pairs all come out right when each does with that
    probability)."""
    c, s = np.asarray(cover_scores, float), np.asarray(stego_scores, float)
    rng = np.random.default_rng(seed)
    n = len(c)
    draws = np.array([auc(s[idx], c[idx]) for idx in rng.integers(0, n, (resamples, n))])
    tail = (1 - level) / 2
    low, high = (float(q) for q in np.quantile(draws, [tail, 1 - tail]))
    value = auc(s, c)
    if value == 1.0:
        low = tail ** (1 / n)
    return value, low, high
