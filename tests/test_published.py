"""Importing the IICNet and WIN authors' checkpoints.

The state dicts here are written from the authors' naming scheme (their modules' attribute
names), and the imported networks are compared with the authors' computations written out
from the papers' code on those same tensors: a renaming slip, a swapped subnet or a wrong
colour order shows up as a different embedding.
"""

import json
import math
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import invblocks
from invblocks.cli import main
from invblocks.io import read_image, write_png
from invblocks.published import IICNET_CONFIGS, convert, import_weights, read_state_dict

GROWTH, WIDTH = 32, 64  # the authors' dense-block growth and relation width


# ------------------------------------------------------------- the authors' state dicts
def dense_keys(prefix, c_in, c_out):
    """The authors' DenseBlock: conv1..conv5, 3x3, growth 32."""
    keys = {}
    for k in range(1, 6):
        out = GROWTH if k < 5 else c_out
        keys[f"{prefix}.conv{k}.weight"] = (out, c_in + (k - 1) * GROWTH, 3, 3)
        keys[f"{prefix}.conv{k}.bias"] = (out,)
    return keys


def iicnet_keys(n, rel, down, order, blocks, out):
    """The state dict of IICNet's ModuleList([RelModule, InvDownscaling, InvBlock, CSLayer,
    Noise]): names and shapes as the authors' modules define them."""
    keys = {}
    if rel:
        for part in ("forw_rel", "back_rel"):
            for i in range(n):
                keys.update(dense_keys(f"0.{part}.DB_heads.{i}", 3, WIDTH))
                keys[f"0.{part}.conv_1x1_heads.{i}.weight"] = (WIDTH, WIDTH, 1, 1)
                keys[f"0.{part}.conv_1x1_heads.{i}.bias"] = (WIDTH,)
                keys[f"0.{part}.conv_merges.{i}.weight"] = (WIDTH, WIDTH * n, 3, 3)
                keys[f"0.{part}.conv_merges.{i}.bias"] = (WIDTH,)
                keys[f"0.{part}.conv_1x1_tails.{i}.weight"] = (WIDTH, WIDTH, 1, 1)
                keys[f"0.{part}.conv_1x1_tails.{i}.bias"] = (WIDTH,)
                keys.update(dense_keys(f"0.{part}.DB_tails.{i}", WIDTH, 3))
    c = 3 * n
    split1 = out
    if down:
        if down == "haar":
            keys["1.operations.0.haar_weights"] = (4 * c, 1, 2, 2)
        keys["1.operations.1.weight"] = (4 * c, 4 * c)  # InvertibleConv1x1 after the downscale
        c *= 4
        split1 = 4 * out if order == "ref" else c // 4
    for b in range(blocks):  # InvArch: F: split2 -> split1, G and H: split1 -> split2
        keys.update(dense_keys(f"2.operations.{b}.F", c - split1, split1))
        keys.update(dense_keys(f"2.operations.{b}.G", split1, c - split1))
        keys.update(dense_keys(f"2.operations.{b}.H", split1, c - split1))
    return keys


HAAR = torch.tensor(
    [[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]], [[1, -1], [-1, 1]]],
    dtype=torch.float32,
)


def random_state(keys, seed):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys.items():
        if key.endswith("haar_weights"):
            state[key] = HAAR[:, None].repeat(shape[0] // 4, 1, 1, 1)
        elif key.endswith("1.operations.1.weight"):  # an invertible 1x1 convolution
            state[key] = torch.linalg.qr(torch.randn(shape, generator=g))[0]
        else:
            state[key] = 0.03 * torch.randn(shape, generator=g)
    return state


# --------------------------------------------------- the authors' computations, written out
def dense(s, p, x):
    feats = [x]
    for k in range(1, 5):
        h = F.conv2d(
            torch.cat(feats, 1), s[f"{p}.conv{k}.weight"], s[f"{p}.conv{k}.bias"], padding=1
        )
        feats.append(F.leaky_relu(h, 0.2))
    return F.conv2d(torch.cat(feats, 1), s[f"{p}.conv5.weight"], s[f"{p}.conv5.bias"], padding=1)


def relation(s, part, x, n):
    p = f"0.{part}"
    heads = [
        F.conv2d(
            dense(s, f"{p}.DB_heads.{i}", frame),
            s[f"{p}.conv_1x1_heads.{i}.weight"],
            s[f"{p}.conv_1x1_heads.{i}.bias"],
        )
        for i, frame in enumerate(x.split(3, 1))
    ]
    h = torch.cat(heads, 1)
    tails = []
    for i in range(n):
        t = F.conv2d(h, s[f"{p}.conv_merges.{i}.weight"], s[f"{p}.conv_merges.{i}.bias"], padding=1)
        t = F.conv2d(t, s[f"{p}.conv_1x1_tails.{i}.weight"], s[f"{p}.conv_1x1_tails.{i}.bias"])
        tails.append(dense(s, f"{p}.DB_tails.{i}", t))
    return x + 0.2 * torch.cat(tails, 1)


def to_ref(x, c):
    """Subband- (or phase-) major [b0(all c); b1; b2; b3] -> each frame's four contiguous."""
    b, _, h, w = x.shape
    return x.reshape(b, 4, c // 3, 3, h, w).transpose(1, 2).reshape(b, 4 * c, h, w)


def from_ref(x, c):
    b, _, h, w = x.shape
    return x.reshape(b, c // 3, 4, 3, h, w).transpose(1, 2).reshape(b, 4 * c, h, w)


def downscale(x, kind, order, c, rev=False):
    b = x.shape[0]
    if not rev:
        h, w = x.shape[2] // 2, x.shape[3] // 2
        if kind == "haar":  # per channel, /4; subband-major
            y = F.conv2d(x, HAAR[:, None].repeat(c, 1, 1, 1), stride=2, groups=c) / 4
            y = y.reshape(b, c, 4, h, w).transpose(1, 2).reshape(b, 4 * c, h, w)
        else:  # phase-major: channel (dy * 2 + dx) * C + c
            y = x.reshape(b, c, h, 2, w, 2).permute(0, 3, 5, 1, 2, 4).reshape(b, 4 * c, h, w)
        return to_ref(y, c) if order == "ref" else y
    y = from_ref(x, c) if order == "ref" else x
    h, w = x.shape[2], x.shape[3]
    if kind == "haar":
        y = y.reshape(b, 4, c, h, w).transpose(1, 2).reshape(b, 4 * c, h, w)
        return F.conv_transpose2d(y, HAAR[:, None].repeat(c, 1, 1, 1), stride=2, groups=c)
    return y.reshape(b, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c, 2 * h, 2 * w)


def coupling(s, p, x, split1, rev=False):
    x1, x2 = x[:, :split1], x[:, split1:]
    if not rev:
        y1 = x1 + dense(s, f"{p}.F", x2)
        scale = torch.sigmoid(dense(s, f"{p}.H", y1)) * 2 - 1
        return torch.cat([y1, x2 * torch.exp(scale) + dense(s, f"{p}.G", y1)], 1)
    scale = torch.sigmoid(dense(s, f"{p}.H", x1)) * 2 - 1
    y2 = (x2 - dense(s, f"{p}.G", x1)) / torch.exp(scale)
    return torch.cat([x1 - dense(s, f"{p}.F", y2), y2], 1)


def authors_iicnet(s, cfg, x_bgr):
    """The IICNet test pass on BGR inputs: the embedding before rounding, and the inputs
    restored from the rounded embedding."""
    n, c = cfg.n_images, 3 * cfg.n_images
    split1 = cfg.out_channels
    y = relation(s, "forw_rel", x_bgr, n) if cfg.relation else x_bgr
    if cfg.downscale:
        y = downscale(y, cfg.downscale, cfg.order, c)
        y = F.conv2d(y, s["1.operations.1.weight"][:, :, None, None])
        split1 = 4 * cfg.out_channels if cfg.order == "ref" else c
        c *= 4
    for b in range(cfg.blocks):
        y = coupling(s, f"2.operations.{b}", y, split1)
    e = y.reshape(y.shape[0], c // cfg.out_channels, cfg.out_channels, *y.shape[2:]).mean(1)
    q = (e * 255).round().clamp(0, 255) / 255
    y = q.repeat(1, c // cfg.out_channels, 1, 1)
    for b in reversed(range(cfg.blocks)):
        y = coupling(s, f"2.operations.{b}", y, split1, rev=True)
    if cfg.downscale:
        c //= 4
        y = F.conv2d(
            y, torch.inverse(s["1.operations.1.weight"].double()).float()[:, :, None, None]
        )
        y = downscale(y, cfg.downscale, cfg.order, c, rev=True)
    return e, (relation(s, "back_rel", y, n) if cfg.relation else y)


def bgr(t):
    """RGB <-> BGR for every 3-channel group."""
    b, c, h, w = t.shape
    return t.reshape(b, c // 3, 3, h, w).flip(2).reshape(b, c, h, w) if c % 3 == 0 else t


def test_the_config_table_is_the_authors():
    # from codes/conf/test/*.yml: downscale type and order, relation, blocks
    assert (IICNET_CONFIGS["st-06"].downscale, IICNET_CONFIGS["st-06"].order) == ("haar", "hl")
    assert (IICNET_CONFIGS["st-07"].downscale, IICNET_CONFIGS["st-07"].order) == ("squeeze", "ref")
    assert (IICNET_CONFIGS["supp-sr-01"].downscale, IICNET_CONFIGS["supp-sr-01"].order) == (
        "squeeze",
        "hl",
    )
    assert IICNET_CONFIGS["supp-gray-01"].downscale is None
    assert [IICNET_CONFIGS[n].blocks for n in ("st-02", "hide-05", "mono-02")] == [30, 30, 24]
    assert not any(IICNET_CONFIGS[n].relation for n in ("st-02", "hide-05", "mono-02"))
    assert len(IICNET_CONFIGS) == 23


@pytest.mark.parametrize("name", sorted(IICNET_CONFIGS))
def test_every_iicnet_configuration_imports_and_computes_the_authors_function(name, tmp_path):
    cfg = IICNET_CONFIGS[name]
    keys = iicnet_keys(
        cfg.n_images, cfg.relation, cfg.downscale, cfg.order, cfg.blocks, cfg.out_channels
    )
    state = random_state(keys, seed=len(name))
    path = tmp_path / "experiments" / name / "models" / "latest.pth"  # the authors' layout
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    model = convert(read_state_dict(path), "iicnet", path=path)
    assert (model.config, model.task, model.n_inputs) == (name, cfg.task, cfg.n_images)
    # the same tensors, read as the authors' code does (BGR), on inputs whose channels differ
    x = torch.rand(1, 3 * cfg.n_images, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        e, restored = authors_iicnet(state, cfg, bgr(x))
        net = model.net.eval()
        ours = net.round_trip(x).embedding
        back = net.restore(net.embed(x))
    assert torch.allclose(bgr(ours), e, atol=1e-5), (ours - bgr(e)).abs().max()
    assert torch.allclose(bgr(back), restored, atol=2e-5), (back - bgr(restored)).abs().max()


def st01_state(seed=0):
    return random_state(iicnet_keys(5, True, None, "ref", 10, 3), seed)


def test_colours_come_out_in_rgb():
    state = st01_state()
    cfg = IICNET_CONFIGS["st-01"]
    net = convert(state, "iicnet", config="st-01").net.eval()
    # a red clip: the authors' network sees it in BGR (blue-channel last), ours takes RGB
    x = torch.zeros(1, 15, 8, 8)
    x[:, 0::3] = 0.9
    with torch.no_grad():
        e_rgb = net.round_trip(x).embedding
        e_bgr, _ = authors_iicnet(state, cfg, bgr(x))
    assert torch.allclose(e_rgb, bgr(e_bgr), atol=1e-5)
    assert not torch.allclose(e_rgb, e_bgr, atol=1e-3)  # the order matters here
    assert net.get_config()["channel_order"] == "bgr"


def test_a_dataparallel_prefix_is_removed(tmp_path):
    torch.save({f"module.{k}": v for k, v in st01_state().items()}, tmp_path / "st-01.pth")
    state = read_state_dict(tmp_path / "st-01.pth")
    assert all(not k.startswith("module.") for k in state)
    assert convert(state, "iicnet", path=tmp_path / "st-01.pth").config == "st-01"


def test_ambiguous_and_wrong_configurations_are_one_sentence(tmp_path):
    state = st01_state()
    with pytest.raises(ValueError, match=r"fits the IICNet configurations st-01, st-03, hide-04, "):
        convert(state, "iicnet", path=tmp_path / "latest.pth")
    assert convert(state, "iicnet", config="hide-04").task == "hiding"
    with pytest.raises(
        ValueError,
        match=r"does not fit IICNet st-06: 0\.forw_rel\.conv_merges\.0\.weight is \(64, 320",
    ):
        convert(state, "iicnet", config="st-06")
    with pytest.raises(ValueError, match=r"unknown IICNet configuration 'st-99'"):
        convert(state, "iicnet", config="st-99")
    broken = dict(state)
    broken["2.operations.0.F.conv1.weight"] = torch.zeros(32, 11, 3, 3)
    with pytest.raises(ValueError, match=r"nearest, st-01, differs: 2\.operations\.0\.F\.conv1"):
        convert(broken, "iicnet")
    with pytest.raises(ValueError, match="holds no WIN tensors"):
        convert(state, "win")


def test_pickles_with_code_and_unknown_files_are_refused_in_one_sentence(tmp_path, payload):
    marker = tmp_path / "payload-ran"
    torch.save({"weight": torch.zeros(1), "x": payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(ValueError) as info:
        read_state_dict(tmp_path / "evil.pth")
    assert "would run code from the file (refused; nothing in it was run)" in str(info.value)
    assert not marker.exists()
    for protocol, needle in ((2, "refused"), (4, "neither a torch.save file nor a pickle")):
        with open(tmp_path / "plain.pkl", "wb") as f:
            pickle.dump(payload(marker), f, protocol=protocol)
        with pytest.raises(ValueError, match=needle):
            read_state_dict(tmp_path / "plain.pkl")
        assert not marker.exists()
    write_png(torch.rand(3, 4, 4), tmp_path / "photo.png")
    with pytest.raises(ValueError, match=r"cannot read .*photo\.png as a PyTorch checkpoint"):
        read_state_dict(tmp_path / "photo.png")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        read_state_dict(tmp_path / "list.pth")
    torch.save({"lr": 0.1}, tmp_path / "numbers.pth")
    with pytest.raises(ValueError, match="holds no tensors"):
        read_state_dict(tmp_path / "numbers.pth")
    for message in map(str, (info.value,)):
        assert "\n" not in message and "weights_only=False" not in message


# ---------------------------------------------------------------------------- WIN
def flow_keys(prefix, channels):
    split1 = channels // 2
    keys = dense_keys(f"{prefix}F", channels - split1, split1)
    keys.update(dense_keys(f"{prefix}G", split1, channels - split1))
    keys.update(dense_keys(f"{prefix}H", split1, channels - split1))
    return keys


def wic_rows(c_in, c_out):
    return c_out if c_in <= c_out else math.ceil(c_in / c_out) * c_out


def win_keys(c_in, c_out, n, modules, blocks, scale, ratio=0.75):
    """model.py's WIN: operations = [PixelShuffler, WIC, WICM, (PixelShuffler,) ..., WIC]."""
    keys, layout, i = {}, [], 0
    short = int(n * ratio)
    c = c_in
    for _ in range(max(1, int(math.log2(scale)))):
        c *= 4
        if scale > 1 and c > n:
            n = 2 ** math.ceil(math.log2(c))
            short = int(n * ratio)
        layout.append(("down",))
        i += 1
        keys[f"operations.{i}.iConv2d.weight"] = (wic_rows(c, short), c, 1, 1)
        layout.append(("wic", short))
        i += 1
        for m in range(modules):
            keys[f"operations.{i}.transform.{m}.iConv2d.weight"] = (n, short, 1, 1)
            for j in range(blocks):
                keys.update(flow_keys(f"operations.{i}.feature.{m}_{j}.", short))
        c = short + modules * (n - short)
        keys.update(flow_keys(f"operations.{i}.tail.0.", c))
        layout.append(("wicm", n, short, modules, blocks))
        i += 1
    if scale == 1:
        layout.append(("up",))
        i += 1
        c //= 4
    keys[f"operations.{i}.iConv2d.weight"] = (wic_rows(c, c_out), c, 1, 1)
    layout.append(("wic", c_out))
    return keys, layout


def win_naive_keys(c_in, c_out, blocks, scale):
    keys, layout, i, c = {}, [], 0, c_in
    for _ in range(max(1, int(math.log2(scale)))):
        c *= 4
        layout.append(("down",))
        i += 1
    for _ in range(blocks):
        keys.update(flow_keys(f"operations.{i}.", c))
        layout.append(("flow", f"operations.{i}."))
        i += 1
    if scale == 1:
        layout.append(("up",))
        i += 1
        c //= 4
    keys[f"operations.{i}.iConv2d.weight"] = (wic_rows(c, c_out), c, 1, 1)
    layout.append(("wic", c_out))
    return keys, layout


def win_state(keys, seed):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys.items():
        if key.endswith("iConv2d.weight"):
            w = torch.empty(shape[:2])
            torch.nn.init.orthogonal_(w, generator=g)
            state[key] = (w + 0.01 * torch.randn(shape[:2], generator=g))[:, :, None, None]
        else:
            state[key] = 0.03 * torch.randn(shape, generator=g)
    return state


def authors_flow(s, p, x):
    return coupling(s, p[:-1] if p.endswith(".") else p, x, x.shape[1] // 2)


def authors_win(s, layout, x):
    """WIN's eval forward: a WIC keeps its first C_out rows; WICM parks LM channels."""
    y = x
    for i, op in enumerate(layout):
        p = f"operations.{i}"
        if op[0] == "down":
            y = F.pixel_unshuffle(y, 2)
        elif op[0] == "up":
            y = F.pixel_shuffle(y, 2)
        elif op[0] == "wic":
            y = F.conv2d(y, s[f"{p}.iConv2d.weight"][: op[1]])
        elif op[0] == "flow":
            y = coupling(s, op[1][:-1], y, y.shape[1] // 2)
        else:
            _, n, short, modules, blocks = op
            parked = []
            for m in range(modules):
                y = F.conv2d(y, s[f"{p}.transform.{m}.iConv2d.weight"])
                parked.append(y[:, : n - short])
                y = y[:, n - short :]
                for j in range(blocks):
                    y = coupling(s, f"{p}.feature.{m}_{j}", y, short // 2)
            y = torch.cat([*parked, y], 1)
            y = coupling(s, f"{p}.tail.0", y, y.shape[1] // 2)
    return y


WIN_CASES = {
    "hiding-1": ("win", (6, 3, 16, 2, 1, 1), "hiding", 2, 16),
    "hiding-3": ("win", (12, 3, 16, 1, 1, 1), "hiding", 4, 16),
    "decolourisation": ("win", (3, 1, 16, 1, 2, 1), "grayscale", 1, 16),
    "rescaling-x2": ("win", (3, 3, 16, 2, 1, 2), "rescaling-x2", 1, 16),
    "rescaling-x4": ("win", (3, 12, 16, 1, 1, 4), "rescaling-x4", 1, 32),
    "naive-hiding-1": ("win-naive", (6, 3, 2, 1), "hiding", 2, 16),
    "naive-rescaling-x2": ("win-naive", (3, 3, 2, 2), "rescaling-x2", 1, 16),
}


@pytest.mark.parametrize("case", sorted(WIN_CASES))
def test_win_checkpoints_import_and_compute_the_authors_forward(case):
    method, args, task, n_inputs, size = WIN_CASES[case]
    keys, layout = (win_keys if method == "win" else win_naive_keys)(*args)
    state = win_state(keys, seed=len(case))
    model = convert(state, method)
    assert (model.task, model.n_inputs) == (task, n_inputs)
    x = torch.rand(1, args[0], size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = authors_win(state, layout, x)
        if y.shape[1] == 12:  # x4: WIN averages its four LR copies
            y = y.reshape(1, 4, 3, *y.shape[2:]).mean(1)
        ours = model.net.eval().body([x])[0][0]
    assert torch.allclose(ours, y, atol=1e-5), (ours - y).abs().max()
    assert model.net.channel_order == "rgb" and model.net.channel.train_mode == "identity"


# ------------------------------------------------------------------ the workflow
def test_import_then_embed_restore_eval_and_fine_tune_from_the_command_line(tmp_path, capsys):
    torch.save(st01_state(), tmp_path / "st-01.pth")
    models = tmp_path / "models" / "st01"
    assert main(["import-weights", "iicnet", str(tmp_path / "st-01.pth"), "-o", str(models)]) == 0
    assert "st-01 model for task 'video' (5 inputs)" in capsys.readouterr().out
    config = json.loads((models / "config.json").read_text())
    assert config["source"]["config"] == "st-01" and config["format"] == "invblocks-checkpoint-2"
    frames = []
    for i in range(5):
        frames.append(tmp_path / f"f{i + 1}.png")
        write_png(torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(i)), frames[-1])
    clip = tmp_path / "clip.png"
    embed = ["embed", "--model", str(models), *map(str, frames), "-o", str(clip), "--device", "cpu"]
    assert main(embed) == 0
    out = tmp_path / "out"
    assert (
        main(["restore", "--model", str(models), str(clip), "-o", str(out), "--device", "cpu"]) == 0
    )
    restored = sorted(out.iterdir())
    assert [p.name for p in restored] == [f"restored_{i}.png" for i in range(5)]
    assert read_image(restored[0]).shape == (3, 20, 30)
    # the same as embedding with the network in Python
    model = invblocks.Model.load(models, device="cpu")
    embedding, _ = model.embed([read_image(f) for f in frames])
    assert torch.equal(read_image(clip), embedding)
    # fine-tuning starts from the imported weights
    run = tmp_path / "run"
    settings = ["steps=1", "crop=16", "batch=1", "val_every=1", "ckpt_every=1", "device=cpu"]
    settings += [f"init={models}"]
    args = ["train", "--task", "video", "--out", str(run), "--quiet"]
    assert main([*args, *[a for s in settings for a in ("--set", s)]]) == 0
    tuned = invblocks.Model.load(run, device="cpu")
    assert tuned.net.get_config() == model.net.get_config()
    # an existing output folder is never overwritten
    capsys.readouterr()
    assert main(["import-weights", "iicnet", str(tmp_path / "st-01.pth"), "-o", str(models)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_fine_tuning_refuses_another_task_or_network_settings(tmp_path):
    from invblocks.config import TrainConfig
    from invblocks.trainer import train

    import_weights("iicnet", _saved(tmp_path), tmp_path / "m", config="st-01")
    base = dict(steps=1, crop=16, batch=1, device="cpu", init=str(tmp_path / "m"))
    with pytest.raises(
        ValueError, match=r"model of task 'video' with 5 inputs; this run trains 'hiding'"
    ):
        train(TrainConfig(task="hiding", **base), tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="gives the network: drop the network settings"):
        train(
            TrainConfig(task="video", network={"blocks": 2}, **base), tmp_path / "b", progress=False
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _saved(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(st01_state(), path)
    return path


def test_the_docs_show_the_key_tables():
    from invblocks.published import IICNET_KEYS, WIN_KEYS

    page = (Path(__file__).parent.parent / "docs" / "published.md").read_text()
    for theirs, ours in [*IICNET_KEYS, *WIN_KEYS]:
        row = f"| `{theirs}` | " + (f"`{ours}` |" if ours else "(the fixed Haar kernels")
        assert row in page, theirs


# ------------------------------------------------------------ methods from plugins
def _mirror(state, *, config, path):
    """An import-weights method of a plugin: IICNet's st-01 under another name."""
    model = convert(state, "iicnet", config="st-01")
    return invblocks.published.ImportedModel(
        net=model.net, task=model.task, n_inputs=model.n_inputs, config="mirrored st-01"
    )


@pytest.fixture()
def mirror_plugin(monkeypatch):
    """A plugin registering the method ``mirror``, loaded as the process's plugins."""
    from invblocks import hookimpl, plugins

    class Mirror:
        @hookimpl
        def invblocks_register_importers(self, registry):
            registry.add_importer("mirror", _mirror)

    registry = plugins.load_plugins([(Mirror(), "mirror-plugin")])
    monkeypatch.setattr(plugins, "_REGISTRY", registry)
    return registry


def test_a_plugin_method_imports_through_the_api_and_the_command_line(
    mirror_plugin, tmp_path, capsys
):
    from invblocks.published import IMPORTERS, importers

    assert mirror_plugin.importers.owner("mirror") == "plugin 'mirror-plugin'"
    assert "mirror" not in IMPORTERS and importers()["mirror"] is _mirror
    assert list(importers())[:3] == ["iicnet", "win", "win-naive"]
    path = _saved(tmp_path)
    assert convert(read_state_dict(path), "mirror").config == "mirrored st-01"
    out = tmp_path / "m"
    assert main(["import-weights", "mirror", str(path), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "mirrored st-01 model for task 'video' (5 inputs)" in said
    source = json.loads((out / "config.json").read_text())["source"]
    assert source["method"] == "mirror" and source["config"] == "mirrored st-01"
    reference = import_weights("iicnet", path, tmp_path / "ref", config="st-01")
    ours, theirs = invblocks.Model.load(out, device="cpu"), invblocks.Model.load(reference)
    a, b = ours.net.state_dict(), theirs.net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_unknown_method_is_one_sentence_naming_the_known_ones(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^unknown method 'iicent'; expected one of iicnet, "):
        convert(st01_state(), "iicent")
    with pytest.raises(ValueError, match="unknown method 'iicent'"):  # before reading the file
        import_weights("iicent", tmp_path / "absent.pth", tmp_path / "m")
    assert main(["import-weights", "iicent", str(_saved(tmp_path)), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "invblocks import-weights: error: unknown method 'iicent'; expected one of iicnet, win, "
        "win-naive"
    )
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


def test_method_names_are_unique_and_methods_are_functions(monkeypatch):
    from invblocks import hookimpl, plugins
    from invblocks.published import IMPORTERS, importers, register_importer

    class Copycat:
        @hookimpl
        def invblocks_register_importers(self, registry):
            registry.add_importer("win", _mirror)

    monkeypatch.setattr(plugins, "_REGISTRY", plugins.load_plugins([(Copycat(), "copycat")]))
    with pytest.raises(
        ValueError,
        match=r"^import-weights method name 'win' registered twice: by invblocks and by plugin "
        r"'copycat'$",
    ):
        importers()
    with pytest.raises(ValueError, match=r"'iicnet' registered twice: by invblocks .* by tests"):
        register_importer("iicnet", _mirror, owner="tests")
    with pytest.raises(TypeError, match="an import-weights method is a function"):
        register_importer("numbers", 3)  # type: ignore[arg-type]
    try:
        assert register_importer("mirror-direct", _mirror, owner="tests") is _mirror
        assert convert(st01_state(), "mirror-direct").config == "mirrored st-01"
    finally:
        IMPORTERS.pop("mirror-direct", None)
