"""check_block catches each kind of broken block (so the property tests can fail); SavedBytes."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from invblocks import Block, Inversion, ric
from invblocks import blocks as B
from invblocks.testing import BlockCheckError, CheckNotRun, SavedBytes, check_block


class Affine(Block):
    """y = a*x + b per channel, with switchable defects."""

    def __init__(self, dims_in=None, defect=None):
        super().__init__(dims_in)
        self.a = torch.nn.Parameter(torch.tensor([1.5, 0.5]))
        self.b = torch.nn.Parameter(torch.zeros(2))
        self.unused = torch.nn.Parameter(torch.zeros(1)) if defect == "dead" else None
        self.defect = defect

    def _forward(self, xs, c):
        (x,) = xs
        a, b = self.a[None, :, None, None], self.b[None, :, None, None]
        if self.defect == "inplace":
            x.mul_(1.0)
            x.add_(1e-3)
        if self.defect == "rng":
            torch.rand(1)
        y = a * x + b
        log_det = self.a.abs().log().sum() * x.shape[2] * x.shape[3]
        if self.defect == "logdet":
            log_det = log_det + 0.1
        if self.defect == "shape":
            y = y[:, :, :-1]
        return y, log_det

    def _inverse(self, ys, c):
        (y,) = ys
        a, b = self.a[None, :, None, None], self.b[None, :, None, None]
        x = (y - b) / a
        if self.defect == "inverse":
            x = x + 1e-3
        if self.defect == "nan":
            x = x * float("nan")
        if self.defect == "positive":  # right only where the output is positive
            x = torch.where(y > 0, x, x.abs())
        return x, -self.a.abs().log().sum() * y.shape[2] * y.shape[3]


def test_a_correct_block_passes():
    check_block(Affine(), (2, 3, 3))


@pytest.mark.parametrize(
    "defect, needle",
    [
        ("inverse", "inverse(forward(x)) differs"),
        ("logdet", "log_det"),
        ("inplace", "modified its input"),
        ("rng", "global random generator"),
        ("dead", "no gradient reaches parameter(s) ['unused']"),
        ("shape", "output_dims says"),
    ],
)
def test_defects_are_caught(defect, needle):
    with pytest.raises(BlockCheckError) as info:
        check_block(Affine(defect=defect), (2, 3, 3))
    assert needle in str(info.value) and "Affine (EXACT)" in str(info.value)


@pytest.mark.parametrize(
    "defect, dims, needle",
    [
        ("nan", (2, 3, 3), "inverse(forward(x)) differs from x by nan"),
        ("positive", (2, 3, 3), "inverse(forward(x)) differs"),
        ("logdet", (2, 16, 16), "log_det"),  # 512 values: above the old 300 limit
        ("logdet", (2, 40, 40), "log_det"),  # checked on a smaller spatial size
    ],
)
def test_lying_blocks_are_caught(defect, dims, needle):
    with pytest.raises(BlockCheckError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        check_block(Affine(defect=defect), dims)


def test_the_log_det_of_a_two_input_block_is_checked():
    class Scale2(Block):
        n_inputs = 2

        def __init__(self, dims_in=None, lie=False):
            super().__init__(dims_in)
            self.lie = lie

        def _forward(self, xs, c):
            a, b = xs
            log_det = b[0].numel() * math.log(3) + (0.5 if self.lie else 0.0)
            return (2 * a, 3 * b), a.new_full(
                (a.shape[0],), float(a[0].numel() * math.log(2) + log_det)
            )

        def _inverse(self, ys, c):
            a, b = ys
            forward = a[0].numel() * math.log(2) + b[0].numel() * math.log(3)
            return (a / 2, b / 3), a.new_full((a.shape[0],), -forward)

        def _output_dims(self, dims):
            return [tuple(d) for d in dims]

    check_block(Scale2(), [(1, 2, 2), (2, 2, 2)], check_gradients=False)
    with pytest.raises(BlockCheckError, match="log_det"):
        check_block(Scale2(lie=True), [(1, 2, 2), (2, 2, 2)], check_gradients=False)


def test_a_check_that_cannot_run_is_said():
    class NoSmall(Affine):
        def _output_dims(self, dims):
            if dims[0][1] < 40:
                raise self._shape_error("at least 40 pixels", dims)
            return super()._output_dims(dims)

    with pytest.warns(CheckNotRun, match="log-det"):
        skipped = check_block(NoSmall(), (2, 40, 40), check_gradients=False)
    assert skipped and "log-det" in skipped[0]


def test_learned_block_must_start_as_identity():
    rel = B.RelationModule(n_images=1, width=4)
    with torch.no_grad():
        rel.forward_net.tailers[0][2].out.bias.fill_(0.5)
    with pytest.raises(BlockCheckError, match="identity at initialisation"):
        check_block(rel, (3, 4, 4))


def test_lossy_right_inverse_is_checked():
    class BadSqueeze(B.ChannelSqueeze):
        def _inverse(self, ys, c):
            return torch.cat([ys[0], torch.zeros_like(ys[0])], 1), None

    with pytest.raises(BlockCheckError, match=r"forward\(inverse\(y\)\) differs"):
        check_block(BadSqueeze([(6, 3, 3)], out_channels=3), (6, 3, 3))


def test_ste_idempotence_is_checked():
    class Shrink(ric.Quantizer):
        inversion = Inversion.STE

        def _forward(self, xs, c):
            return xs[0] * 0.5, None

    with pytest.raises(BlockCheckError, match="idempotent"):
        check_block(Shrink(), (1, 3, 3))


@given(n=st.integers(1, 64), lo=st.integers(0, 20), width=st.integers(1, 20))
def test_saved_bytes_counts_every_save_and_each_storage_once(n, lo, width):
    x = torch.rand(n, requires_grad=True)
    buf = torch.rand(lo + width + 3, dtype=torch.float64, requires_grad=True)
    with SavedBytes() as saved:
        y = (x * x).sum() + torch.sin(x).sum()  # x saved three times
        view = buf[lo : lo + width]
        z = torch.sin(view).sum()  # a view saved: its whole storage is held
        w = torch.nn.Parameter(torch.rand(n))
        v = (w * 2.0).sum() + (x * w).sum()  # parameters are not counted; x once more
        v = v + (x[:1] * w[:1]).sum()  # nor views of them; a view of x: x's storage again
    assert saved.bytes == 4 * (4 * n + 1) + 8 * width
    assert saved.distinct_bytes == 4 * n + 8 * (lo + width + 3)
    (y + z + v).backward()


class WithAux(Affine):
    """An exact block with an auxiliary output; ``lie`` declares a shape it does not return,
    ``drift`` moves the outputs ``forward_with_aux`` returns."""

    def __init__(self, dims_in=None, lie=False, drift=0.0):
        super().__init__(dims_in)
        self.lie, self.drift = lie, drift

    def _forward_aux(self, xs, c):
        y, log_det = self._forward(xs, c)
        return y + self.drift, log_det, {"double": 2 * y}

    def _aux_dims(self, dims):
        c, h, w = dims[0]
        return {"double": (c, h, w + 1 if self.lie else w)}


def test_declared_auxiliary_outputs_are_checked():
    check_block(WithAux(), (2, 4, 4))
    with pytest.raises(BlockCheckError, match=r"aux_dims declares .* forward_with_aux returned"):
        check_block(WithAux(lie=True), (2, 4, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_with_aux_must_return_the_forward_outputs(dtype):
    check_block(WithAux(drift=1e-12 if dtype == torch.float64 else 1e-7), (2, 4, 4), dtype=dtype)
    with pytest.raises(BlockCheckError, match="forward_with_aux returns other outputs"):
        check_block(WithAux(drift=1e-3), (2, 4, 4), dtype=dtype)


def test_check_task_rejects_a_loss_term_that_reaches_no_parameter():
    import attrs

    import invblocks
    from invblocks.ric import LossConfig, loss_term
    from invblocks.testing import check_task

    @loss_term("constant")
    def constant(result, batch):
        return batch.reference.sum()  # detached: no gradient reaches the network

    task = invblocks.get_task("grayscale")
    bad = attrs.evolve(
        task, loss_terms=[constant], losses=LossConfig(constant=1.0), name="grayscale-bad"
    )
    net = bad.build_network(blocks=1, width=4, growth=4)
    with pytest.raises(AssertionError, match="loss term 'constant' reaches no parameter"):
        check_task(bad, network=net, steps=1, batch=1, crop=16)
