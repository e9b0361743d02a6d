"""The channel contract: the deployment face of the built-in channels, the bitstream container,
parameter groups, and a third party's channel, task and optimiser through the command line."""

import json
import signal
import struct
import subprocess
import sys
import time
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from invblocks import presets, ric
from invblocks.ric.groups import ParamGroup, split_parameters
from invblocks.ric.payload import Payload, dumps_container, loads_container


# ------------------------------------------------------------------ built-in channels
@given(bits=st.integers(1, 8), seed=st.integers(0, 2**16), dtype=st.sampled_from(["f32", "f64"]))
@settings(deadline=None)
def test_the_quantisers_deployment_face_is_its_eval_rounding(bits, seed, dtype):
    dtype = torch.float32 if dtype == "f32" else torch.float64
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 1.2
    q = ric.Quantizer(bits=bits).eval()
    payloads = q.encode(x)
    assert [p.data.dtype for p in payloads] == [torch.uint8] * 2  # 8-bit pixels
    assert torch.equal(q.decode(payloads, dtype=dtype), ric.quantize(x, bits))
    assert torch.equal(q([x])[0][0], ric.quantize(x, bits))


def test_quantisers_of_more_than_8_bits_send_their_levels():
    x = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for bits in (9, 12, 16):
        q = ric.Quantizer(bits=bits).eval()
        (payload,) = q.encode(x)
        assert payload.data.dtype == torch.int32
        assert torch.equal(q.decode([payload], dtype=torch.float64), ric.quantize(x, bits))
        with pytest.raises(ValueError, match=f"a {bits}-bit embedding has no PNG form"):
            q.dumps(payload, {})


def test_channel_arguments_alone_change_the_networks_own_channel():
    from invblocks.config import TrainConfig
    from invblocks.trainer import _with_channel

    net = presets.win(6, 3, modules=1, blocks=1, size=(16, 16))
    config = TrainConfig(task="hiding", channel={"train_mode": "ste", "bits": 6})
    changed = _with_channel(net, config)
    assert isinstance(changed.channel, ric.Quantizer)
    assert (changed.channel.train_mode, changed.channel.bits) == ("ste", 6)
    with pytest.warns(DeprecationWarning, match="quantizer='round' is deprecated"):
        old = TrainConfig(task="hiding", quantizer="round")
    assert old.channel == {"type": "quantizer", "train_mode": "round"}
    assert "quantizer" not in old.to_dict()
    upgraded = TrainConfig.upgrade({"task": "hiding", "quantizer": "ste", "channel": None})
    assert upgraded == {"task": "hiding", "channel": {"type": "quantizer", "train_mode": "ste"}}


def test_a_jpeg_channels_payload_is_the_jpeg_file():
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    channel = ric.JPEGChannel(quality=80).eval()
    (payload,) = channel.encode(x)
    assert isinstance(payload.data, bytes) and payload.data.startswith(b"\xff\xd8")
    assert torch.equal(channel.decode([payload]), ric.jpeg_round_trip(x, 80))
    assert torch.equal(channel([x])[0][0], ric.jpeg_round_trip(x, 80))


def test_the_network_sends_through_its_channel_and_hands_its_auxiliary_outputs_on():
    net = presets.iicnet(2, blocks=1, width=4, growth=4, size=(16, 16)).eval()
    x = torch.rand(1, 6, 16, 16, generator=torch.Generator().manual_seed(0))
    (e,), _ = net.body([x])
    assert torch.equal(net.embed(x), ric.quantize(e))
    assert torch.allclose(net.decode(net.encode(x)), net.restore(net.embed(x)))
    jpeg = ric.JPEGChannel(quality=70)
    assert torch.equal(net.embed(x, jpeg), ric.jpeg_round_trip(e, 70))
    with pytest.raises(TypeError, match=r"must be an invblocks\.ric\.Channel"):
        ric.RICNet(net.body, presets.B.ChannelSqueeze(out_channels=3))


def test_files_are_chosen_by_suffix_and_channel():
    q = ric.Quantizer([(3, 8, 8)])
    assert q.for_file(".png") is q
    jpeg = q.for_file(".jpg", 80)
    assert isinstance(jpeg, ric.JPEGChannel) and jpeg.eval_quality == 80
    assert isinstance(jpeg.for_file(".png"), ric.Quantizer)
    with pytest.raises(ValueError, match=r"writes \.png, \.jpg or \.jpeg files; received '\.ibc'"):
        q.for_file(".ibc")
    with pytest.raises(ValueError, match="a quality is for JPEG files"):
        q.for_file(".png", 90)


def test_the_jpeg_channel_says_a_residue_hiding_does_not_suit_it():
    hidden = presets.iicnet(2, blocks=1, width=4, growth=4, size=(16, 16), init="trivial",
                            hiding_levels=16)  # fmt: skip
    plain = presets.iicnet(2, blocks=1, width=4, growth=4, size=(16, 16))
    jpeg = ric.JPEGChannel()
    assert jpeg.problems(plain.body) == [] and ric.Quantizer().problems(hidden.body) == []
    (problem,) = jpeg.problems(hidden.body)
    assert "ResidueHiding" in problem and "JPEG destroys" in problem
    assert hidden.with_channel(jpeg).problems() == [problem]


# ----------------------------------------------------------------- the container
@given(
    data=st.binary(max_size=300),
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    height=st.integers(1, 10**6),
)
@settings(deadline=None)
def test_the_container_round_trips(data, shape, height):
    meta = {"format": 1, "task": "t", "n_inputs": 1, "height": height, "width": 3}
    blob = dumps_container(Payload(data, shape, {"levels": 7}), "noisy-latent", meta)
    got_meta, channel, payload = loads_container(blob, "x.ibc")
    assert (got_meta, channel, payload.data, payload.shape) == (
        meta,
        "noisy-latent",
        data,
        tuple(shape),
    )
    assert payload.info == {"levels": 7}


def _container():
    meta = {"format": 1, "task": "t", "n_inputs": 1, "height": 4, "width": 4}
    return dumps_container(Payload(b"0123456789" * 5, (1, 2, 25)), "c", meta)


@pytest.mark.parametrize(
    ("alter", "message"),
    [
        (lambda b: b[:-9], "x.ibc is truncated"),
        (lambda b: b[:20], "x.ibc is truncated"),
        (lambda b: b + b"\0", r"x.ibc is damaged \(bytes after its end\)"),
        (lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:], "checksum does not match"),
        (lambda b: b"GIF89a" + b[6:], "is not an invblocks bitstream"),
        (lambda b: b[:8] + struct.pack(">H", 9) + b[10:], "version-9 bitstream"),
        (lambda b: b[:8] + struct.pack(">H", 0) + b[10:], r"damaged \(its container version is 0"),
        (lambda b: b[:10] + struct.pack(">I", 2**31) + b[14:], "header runs past the file"),
    ],
    ids=[
        "truncated",
        "header-only",
        "extra",
        "flipped",
        "foreign",
        "newer",
        "zero",
        "header-length",
    ],
)
def test_a_damaged_container_is_one_sentence(alter, message):
    with pytest.raises(ValueError, match=message):
        loads_container(alter(_container()), "x.ibc")


def test_a_container_whose_header_is_not_ours_is_refused():
    header = b'{"meta": [1], "channel": "c", "shape": [1]}'
    body = ric.payload.CONTAINER_MAGIC + struct.pack(">HI", 1, len(header)) + header
    body += struct.pack(">Q", 0)
    blob = body + struct.pack(">I", zlib.crc32(body))
    with pytest.raises(ValueError, match="its header is not what invblocks writes"):
        loads_container(blob, "x.ibc")
    deep = b"[" * 100_000 + b"]" * 100_000
    body = ric.payload.CONTAINER_MAGIC + struct.pack(">HI", 1, len(deep)) + deep
    body += struct.pack(">Q", 0)
    with pytest.raises(ValueError, match="nested too deeply"):
        loads_container(body + struct.pack(">I", zlib.crc32(body)), "x.ibc")


# ---------------------------------------------------------------- parameter groups
def test_parameter_groups_split_the_parameters_and_refuse_ambiguity():
    net = presets.iicnet(2, blocks=2, width=4, growth=4, size=(8, 8))
    group = ParamGroup(name="first", params="body.nodes.2.*", terms=("x",))
    main, found = split_parameters(net, [group])
    names = {id(p): n for n, p in net.named_parameters()}
    assert found["first"] and all(names[id(p)].startswith("body.nodes.2.") for p in found["first"])
    assert len(main) + len(found["first"]) == len(list(net.parameters()))
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        split_parameters(net, [ParamGroup(name="none", params="nothing.*", terms=("x",))])
    other = ParamGroup(name="second", params="body.nodes.2.*", terms=("y",))
    with pytest.raises(ValueError, match="is in the groups first, second"):
        split_parameters(net, [group, other])
    with pytest.raises(ValueError, match="declared twice: first"):
        split_parameters(net, [group, group])
    with pytest.raises(ValueError):
        ParamGroup(name="main", params="*", terms=("x",))


# ------------------------------------------------------- a third party's channel
def _cli(env, *args, timeout=300):
    proc = subprocess.run(
        [sys.executable, "-m", "invblocks", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip
    return proc


SETTINGS = ["steps=60", "ckpt_every=2", "val_every=1000", "val_samples=1", "device=cpu",
            "seed=3"]  # fmt: skip


def _train(env, run, *more):
    sets = [a for s in [*SETTINGS, *more] for a in ("--set", s)]
    return [sys.executable, "-m", "invblocks", "train", "--task", "paired-rate", "--out",
            str(run), "--quiet", *sets]  # fmt: skip


def test_a_plugins_channel_task_and_optimiser_train_resume_embed_restore_and_evaluate(
    plugin_env, tmp_path
):
    env = plugin_env("ratetest")
    whole = tmp_path / "whole"
    done = subprocess.run(_train(env, whole), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(x) for x in (whole / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "total" in r]
    # the rate term is logged, minimised by the density's optimiser, not in the main total
    assert all("rate" in r and "total_density" in r for r in steps)
    assert steps[0]["total_density"] == pytest.approx(steps[0]["rate"])
    assert steps[0]["total"] == pytest.approx(steps[0]["embedding"] + steps[0]["restoration"])
    (validation,) = [r["validation"] for r in records if "validation" in r]
    assert validation["bpp"] > 0 and validation["embedding_psnr"] > 10  # the paired reference
    final = whole / "checkpoints" / (whole / "checkpoints" / "LATEST").read_text()
    state = torch.load(final / "train_state.pt", weights_only=True)
    assert set(state["optimizers"]) == {"density"}
    weights = load_file(str(final / "model.safetensors"))
    # before each of the 30 checkpoints, and before the one validation's best-scored network
    assert int(weights["channel.finalized"]) == 31

    # killed, then resumed: bit for bit the uninterrupted run
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train(env, killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoints" / "LATEST").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    latest = (killed / "checkpoints" / "LATEST").read_text()
    stopped = json.loads((killed / "checkpoints" / latest / "config.json").read_text())["step"]
    assert stopped < 60
    resumed = subprocess.run([*_train(env, killed), "--resume"], capture_output=True, text=True,
                             env=env)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = killed / "checkpoints" / (killed / "checkpoints" / "LATEST").read_text()
    for name in ("model.safetensors",):
        assert (again / name).read_bytes() == (final / name).read_bytes()
    a = torch.load(again / "train_state.pt", weights_only=True)["optimizers"]["density"]
    b = state["optimizers"]["density"]
    assert all(torch.equal(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"]) for k in b["state"])

    # its payload file, restored; its metric in the evaluation
    photo = tmp_path / "photo.png"
    from invblocks.io import write_png

    write_png(torch.rand(3, 21, 30, generator=torch.Generator().manual_seed(0)), photo)
    sent = tmp_path / "photo.ibc"
    out = _cli(env, "embed", "--model", whole, photo, "-o", sent, "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert sent.read_bytes().startswith(b"\x89IBC\r\n\x1a\n")
    out = _cli(env, "restore", "--model", whole, sent, "-o", tmp_path / "back")
    assert out.returncode == 0, out.stderr
    assert [p.name for p in (tmp_path / "back").iterdir()] == ["restored_0.png"]
    out = _cli(env, "eval", "--model", whole, "--samples", "1", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["bpp"] > 0 and report["file_bytes"] > 0 and "baseline_psnr" in report

    # a damaged or foreign file: one sentence, exit 2, nothing written
    damaged = tmp_path / "damaged.ibc"
    damaged.write_bytes(sent.read_bytes()[:-3])
    foreign = tmp_path / "foreign.ibc"
    foreign.write_bytes(photo.read_bytes())
    for bad, needle in ((damaged, "is truncated"), (foreign, "not an invblocks bitstream")):
        target = tmp_path / f"out-{bad.stem}"
        out = _cli(env, "restore", "--model", whole, bad, "-o", target)
        assert out.returncode == 2 and needle in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and not target.exists()
