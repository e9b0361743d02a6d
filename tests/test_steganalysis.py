"""The steganalysis detectors on images whose answer is known: LSB replacement at known
rates on crops of real photographs."""

import itertools

import numpy as np
import pytest

from invblocks import steganalysis as S
from invblocks.data import default_file
from invblocks.io import read_image


def crops(name, size=128, count=3):
    """Crops of a bundled photograph (one that was a PNG: no JPEG blocks) as uint8 HxWx3."""
    photo = read_image(default_file(name)).mul(255).round().byte().permute(1, 2, 0).numpy()
    h, w = photo.shape[:2]
    step = max(1, (w - size) // max(1, count - 1))
    return [
        photo[(h - size) // 2 : (h + size) // 2, k * step : k * step + size] for k in range(count)
    ]


PHOTOS = ["chelsea", "astronaut", "coffee", "motorcycle_left"]


@pytest.mark.parametrize("detector", [S.sample_pairs, S.rs_analysis, S.weighted_stego])
@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5])
def test_structural_detectors_estimate_the_share_of_replaced_bits(detector, rate):
    rng = np.random.default_rng(0)
    estimates = [
        detector(S.lsb_replace(c, rate, rng)) for name in PHOTOS for c in crops(name, count=2)
    ]
    assert abs(np.median(estimates) - rate) < 0.06, estimates


def test_the_chi_square_attack_sees_equalised_pairs():
    rng = np.random.default_rng(1)
    covers = [c for name in PHOTOS for c in crops(name, 256, 1)]
    full = [S.lsb_replace(c, 1.0, rng) for c in covers]
    assert np.mean([S.chi_square(s) for s in full]) > np.mean([S.chi_square(c) for c in covers])
    assert S.auc([S.chi_square(s) for s in full], [S.chi_square(c) for c in covers]) >= 0.75


def test_the_auc_is_the_share_of_pairs_ranked_right():
    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1, 1, 40), rng.normal(0, 1, 30)
    pos[:5] = neg[:5]  # ties count half
    count = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    assert S.auc(pos, neg) == pytest.approx(count / (40 * 30))
    value, low, high = S.auc_interval(neg[:30], pos[:30], resamples=500)
    assert low <= value <= high and high - low < 0.5
    perfect = S.auc_interval(np.zeros(200), np.ones(200), resamples=50)
    assert perfect[0] == 1.0 and perfect[1] == pytest.approx(0.025 ** (1 / 200))


def test_spam_features_are_transition_probabilities():
    x = crops("coffee", 64, 1)[0]
    f = S.spam(x)
    assert f.shape == (686,) and f.min() >= 0
    # each (d1, d2) row of a direction's matrix sums to 1 (or 0 where never seen); averaged
    # over directions and channels, to at most 1, and 1 where every direction saw it
    rows = f.reshape(2, 7, 7, 7).sum(axis=-1)
    assert np.all(rows <= 1 + 1e-9) and (rows > 1 - 1e-9).mean() > 0.3
    assert S.spam(x, t=2).shape == (250,)


def test_the_learned_detector_scores_each_group_with_a_model_of_the_others():
    rng = np.random.default_rng(3)
    covers = rng.normal(0, 1, (60, 20))
    stegos = covers + np.r_[3.0, np.zeros(19)]  # the first feature gives a stego away
    groups = np.repeat([0, 1, 2], 20)
    cover_scores, stego_scores = S.learned_scores(covers, stegos, groups)
    assert S.auc(stego_scores, cover_scores) > 0.8
    noise = rng.normal(0, 1, (60, 20))
    chance = S.learned_scores(noise, rng.normal(0, 1, (60, 20)), groups)
    assert abs(S.auc(chance[1], chance[0]) - 0.5) < 0.2
    with pytest.raises(ValueError, match="at least two groups"):
        S.learned_scores(covers, stegos, np.zeros(60))


def test_detectors_take_8_bit_values_only():
    with pytest.raises(ValueError, match="expected 8-bit values"):
        S.sample_pairs(np.zeros((8, 8), dtype=np.float32))
