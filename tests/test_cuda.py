"""On a CUDA GPU: the networks compute what they compute on the CPU, and the workflow (train,
resume, embed, restore, the command line, torch.compile) runs there. Skipped without a GPU;
the block contracts themselves run on every device through the ``device`` fixture."""

import copy
import json

import pytest
import torch

import invblocks
from invblocks import Model
from invblocks.cli import main
from invblocks.config import TrainConfig
from invblocks.ric import ric_step
from invblocks.testing import perturb_parameters
from invblocks.trainer import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

TINY = {"blocks": 2, "width": 8}


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(autouse=True)
def _exact_gpu_float32():
    """TF32 off while comparing with the CPU (PyTorch lets cuDNN use it for float32
    convolutions by default); restored afterwards."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def networks():
    """(name, network, stacked input) for IICNet st-01 (small) and WIN hiding (small)."""
    video, hiding = invblocks.get_task("video"), invblocks.get_task("hiding")
    st01 = video.build_network(3, blocks=3, width=8, generator=gen(0))
    win = hiding.build_network(2, preset="win", blocks=1, generator=gen(0))
    return [("st01", video, st01, 3), ("win", hiding, win, 2)]


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("channels_last", [False, True])
def test_training_step_on_gpu_equals_the_cpu_float64(which, channels_last):
    name, task, net, n = networks()[which]
    net = net.double()
    perturb_parameters(net, 0.05, gen(1))
    x = torch.rand(2, n * task.image_channels, 32, 32, generator=gen(2), dtype=torch.float64)
    results = []
    for device in ("cpu", "cuda"):
        layout = torch.channels_last if channels_last else torch.contiguous_format
        model = copy.deepcopy(net).to(device=device, memory_format=layout)
        model.zero_grad(set_to_none=True)
        # the quantiser's training noise would differ by device
        model = model.with_channel(invblocks.blocks.Quantizer(train_mode="ste"))
        terms = ric_step(task, model, x.to(device).contiguous(memory_format=layout), n)
        terms["total"].backward()
        grads = {k: p.grad.cpu() for k, p in model.named_parameters() if p.grad is not None}
        results.append((float(terms["total"].detach()), grads))
    (loss_cpu, g_cpu), (loss_gpu, g_gpu) = results
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-10), name
    assert g_cpu.keys() == g_gpu.keys() and len(g_cpu) > 0
    for k, g in g_cpu.items():
        err = float((g - g_gpu[k]).abs().max() / g.abs().max().clamp_min(1e-300))
        assert err < 1e-8, (name, k, err)


def test_st01_couplings_round_trip_on_gpu_float32():
    _, _, net, _ = networks()[0]
    perturb_parameters(net, 0.05, gen(3))
    body = net.body[1 : len(net.body) - 1].cuda().eval()  # the EXACT couplings
    x = torch.rand(1, 9, 64, 64, generator=gen(4)).cuda()
    with torch.no_grad():
        (y,), _ = body([x])
        (back,), _ = body([y], rev=True)
    assert y.is_cuda and float((back - x).abs().max()) < 1e-5


def tiny(**kw):
    base = dict(
        task="hiding",
        n_inputs=2,
        steps=4,
        crop=32,
        batch=1,
        network={"blocks": 1, "width": 8},
        val_every=2,
        ckpt_every=2,
        val_samples=1,
        seed=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def losses(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_train_resume_and_embed_on_gpu(tmp_path):
    gpu = train(tiny(device="cuda"), tmp_path / "gpu", progress=False)
    cpu = train(tiny(device="cpu"), tmp_path / "cpu", progress=False)
    rg, rc = losses(gpu), losses(cpu)
    assert rg[-1]["device"] == "cuda:0" and rc[-1]["device"] == "cpu"
    tg = [r["total"] for r in rg if "total" in r]
    tc = [r["total"] for r in rc if "total" in r]
    # step 1 starts from identical weights and data; the quantiser's noise comes from each
    # device's own generator, so later steps differ a little
    assert tg[0] == pytest.approx(tc[0], rel=1e-3)
    assert tg == pytest.approx(tc, rel=0.1)
    # the checkpoint carries the GPU's generator state, and resuming on the GPU finishes
    state = torch.load(gpu / "checkpoints" / "step-00000004" / "train_state.pt", weights_only=True)
    assert "cuda_rng" in state
    more = train(tiny(device="cuda", steps=6), gpu, resume=True, progress=False)
    assert [r["step"] for r in losses(more) if "total" in r] == [1, 2, 3, 4, 5, 6]
    # a GPU-trained model embeds on the GPU and restores on the CPU (and the other way round)
    images = [torch.rand(3, 40, 48, generator=gen(i)) for i in range(2)]
    on_gpu, on_cpu = Model.load(gpu, device="cuda"), Model.load(gpu, device="cpu")
    assert on_gpu.device.type == "cuda" and not on_gpu.channels_last and on_cpu.channels_last
    (eg, meta), (ec, _) = on_gpu.embed(images), on_cpu.embed(images)
    assert eg.device.type == "cpu" and eg.shape == ec.shape
    assert float((eg - ec).abs().max()) <= 1 / 255 + 1e-6  # float rounding moves a level at most
    for a, b in zip(on_gpu.restore(eg, meta), on_cpu.restore(eg, meta), strict=True):
        assert a.device.type == "cpu" and float((a - b).abs().max()) < 1e-4


def test_cli_on_gpu(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--task", "hiding", "--out", str(run), "--quiet", "--device", "cuda"]
    args += ["--set", "steps=2", "--set", "crop=32", "--set", 'network={"blocks": 1}']
    assert main(args) == 0
    from invblocks.io import write_png

    hiding = invblocks.get_task("hiding")
    images = [torch.rand(3, 32, 32, generator=gen(i)) for i in range(2)]
    paths = [write_png(im, tmp_path / f"in{i}.png") for i, im in enumerate(images)]
    png = tmp_path / "e.png"
    embed = ["embed", "--model", str(run), *map(str, paths), "-o", str(png), "--device", "cuda"]
    assert main(embed) == 0
    out = tmp_path / "r"
    assert main(["restore", "--model", str(run), str(png), "-o", str(out), "--device", "cpu"]) == 0
    assert len(list(out.glob("restored_*.png"))) == hiding.default_inputs
    assert main(["eval", "--model", str(run), "--samples", "1", "--device", "cuda:0"]) == 0
    count = torch.cuda.device_count()
    capsys.readouterr()
    assert main(["eval", "--model", str(run), "--device", f"cuda:{count}"]) == 2
    assert f"asked for GPU {count}" in capsys.readouterr().err


def test_compiled_training_step_on_gpu_matches_eager():
    import torch._inductor.config

    task = invblocks.get_task("video")
    net = task.build_network(3, blocks=2, width=8, generator=gen(0)).cuda()
    perturb_parameters(net, 0.05, gen(1))
    x = torch.rand(1, 9, 32, 32, generator=gen(2)).cuda()
    for rev, v in ((False, x), (True, net(x))):  # training mode, both directions
        explained = torch._dynamo.explain(lambda t, rev=rev: net([t], rev=rev))(v)
        assert explained.graph_break_count == 0, explained.break_reasons
    torch.manual_seed(5)
    eager = ric_step(task, net, x, 3)["total"]
    before = torch._inductor.config.fallback_random
    torch._inductor.config.fallback_random = True  # the quantiser's noise drawn as in eager
    try:
        compiled = copy.deepcopy(net).compile_body(fullgraph=True)
        torch.manual_seed(5)
        got = ric_step(task, compiled, x, 3)["total"]
    finally:
        torch._inductor.config.fallback_random = before
    assert float(got.detach()) == pytest.approx(float(eager.detach()), rel=1e-5)
    got.backward()
    assert all(p.grad is not None for p in compiled.parameters())


def test_trainer_with_cuda_graphs(tmp_path):
    eager = train(
        tiny(device="cuda", steps=3, ckpt_every=3, val_every=3), tmp_path / "e", progress=False
    )
    graphs = train(
        tiny(device="cuda", steps=3, ckpt_every=3, val_every=3, compile="reduce-overhead"),
        tmp_path / "g",
        progress=False,
    )
    te = [r["total"] for r in losses(eager) if "total" in r]
    tg = [r["total"] for r in losses(graphs) if "total" in r]
    # inductor draws the quantiser's noise its own way: close, not equal
    assert len(tg) == 3 and tg == pytest.approx(te, rel=0.1)
    assert Model.load(graphs, device="cuda").embed([torch.rand(3, 32, 32)] * 2)[0].shape[0] == 3
