"""invblocks.losses: the reductions, the frequency loss's Parseval relation, terms, objectives."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from invblocks.ric import (
    LOSS_TERMS,
    LossConfig,
    LossTerm,
    Objective,
    RICBatch,
    RICResult,
    charbonnier_loss,
    frequency_loss,
    l2_loss,
    loss_term,
    register_loss_term,
)


def without_dc_and_nyquist(d):
    """``d`` with every row's mean and alternating sum removed (even width): its one-sided
    FFT then has zero DC and Nyquist columns."""
    w = d.shape[-1]
    ones = torch.ones(w, dtype=d.dtype) / math.sqrt(w)
    alt = torch.tensor([(-1.0) ** k for k in range(w)], dtype=d.dtype) / math.sqrt(w)
    for v in (ones, alt):
        d = d - (d @ v)[..., None] * v
    return d


@given(h=st.integers(2, 9), w=st.integers(1, 6).map(lambda k: 2 * k), seed=st.integers(0, 999))
@settings(deadline=None)
def test_the_frequency_loss_is_hw_over_2_times_the_l2_by_parseval(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(2, 3, h, w, generator=g, dtype=torch.float64)
    d = without_dc_and_nyquist(torch.randn(2, 3, h, w, generator=g, dtype=torch.float64))
    assert torch.allclose(frequency_loss(a, a - d), h * w / 2 * l2_loss(a, a - d), rtol=1e-10)
    # in general the DC and Nyquist columns count twice: between HW/2 and HW times
    b = torch.rand(2, 3, h, w, generator=g, dtype=torch.float64)
    ratio = float(frequency_loss(a, b) / l2_loss(a, b))
    assert h * w / 2 - 1e-9 <= ratio <= h * w + 1e-9


def test_reductions():
    a, b = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    assert float(l2_loss(a, b)) == 4.0  # summed over (C, H, W), mean over the batch
    assert float(l2_loss(a, b, reduction="mean")) == 1.0
    assert float(charbonnier_loss(a, a)) == pytest.approx(4 * math.sqrt(1e-6))
    with pytest.raises(ValueError, match="reduction must be"):
        l2_loss(a, b, reduction="max")


def result_and_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 6, 8, 8, generator=g)
    e = torch.rand(2, 3, 8, 8, generator=g)
    restored = torch.rand(2, 6, 8, 8, generator=g)
    result = RICResult(embedding=e, received=e, restored=restored)
    return result, RICBatch(inputs=x, reference=x[:, :3], n_images=2)


def test_the_built_in_terms_compute_what_they_say():
    result, batch = result_and_batch()
    assert torch.equal(
        LOSS_TERMS["embedding"](result, batch), l2_loss(result.embedding, batch.reference)
    )
    assert torch.equal(
        LOSS_TERMS["restoration"](result, batch),
        charbonnier_loss(result.restored, batch.inputs) / 2,
    )
    expected = float((result.restored - batch.inputs).square().sum((1, 2, 3)).mean()) / 2
    assert float(LOSS_TERMS["restoration_l2"](result, batch)) == pytest.approx(expected)
    assert LossConfig().weights.get("restoration_l2", 0.0) == 0.0  # off unless asked for
    assert LOSS_TERMS["gram_det"](result, batch) is None  # no WIC: the term does not apply


def test_an_objective_weights_and_sums_its_terms():
    result, batch = result_and_batch()
    objective = Objective.build(LossConfig(frequency=0.0, restoration=2.0))
    terms = objective(result, batch)
    assert set(terms) == {"embedding", "restoration", "total"}
    assert torch.allclose(terms["total"], terms["embedding"] + terms["restoration"])
    assert torch.allclose(terms["restoration"], 2 * LOSS_TERMS["restoration"](result, batch))


def test_loss_config_names_and_checks():
    assert LossConfig().weights["restoration"] == 3.0
    old = LossConfig(emb=2.0, freq=0.0, res=1.0, det=0.5)  # the names of 0.1
    assert dict(old.weights) == {**LossConfig().weights, "embedding": 2.0, "frequency": 0.0,
                                 "restoration": 1.0, "gram_det": 0.5}  # fmt: skip
    assert LossConfig(restoration=1.0) == LossConfig({"restoration": 1.0})
    assert hash(LossConfig()) == hash(LossConfig())
    for bad in (-1, float("nan"), "x", True):
        with pytest.raises(ValueError, match="expected a number >= 0"):
            LossConfig(embedding=bad)
    with pytest.raises(ValueError, match="reduction"):
        LossConfig(reduction="max")
    assert LossConfig().updated({"reduction": "mean"}).reduction == "mean"


def test_terms_register_once_and_clash_by_name():
    @loss_term("test_term_once")
    def first(result, batch):
        return result.embedding.sum()

    assert isinstance(first, LossTerm) and first.name == "test_term_once"
    register_loss_term(first, owner="a test")
    register_loss_term(first, owner="a test")  # the same object: fine
    other = LossTerm("test_term_once", lambda r, b: r.embedding.mean())
    with pytest.raises(ValueError, match="registered twice: by a test and by another"):
        register_loss_term(other, owner="another")
    with pytest.raises(TypeError, match="not an invblocks LossTerm"):
        register_loss_term(lambda r, b: 0, owner="x")
    LOSS_TERMS.pop("test_term_once")
