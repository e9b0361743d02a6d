"""Graph: build, run both ways, validation that reports every problem, JSON, drawing."""

import json

import pytest
import torch

from invblocks import Graph, GraphError, Inversion, RICNet, Sequence, block_from_config, presets
from invblocks import blocks as B
from invblocks.testing import check_block, perturb_parameters


def gen(seed):
    return torch.Generator().manual_seed(seed)


def two_branch(seed=0):
    g = Graph({"a": (4, 6, 6), "b": (2, 6, 6)})
    g.add("split", B.Split, "a", sections=[1, 3])
    g.add("flow", B.AffineCoupling, "split:1", split=1, generator=gen(seed))
    g.add("merge", B.Concat, ["split:0", "b", "flow"])
    g.add("mix", B.InvConv1x1, "merge", generator=gen(seed))
    g.add("halves", B.Split, "mix", sections=[3, 3])
    return g.output("halves:1", "halves:0")


def test_forward_inverse_and_log_det():
    g = two_branch().double()
    perturb_parameters(g, 0.05, gen(1))
    a, b = torch.rand(2, 4, 6, 6, dtype=torch.float64), torch.rand(2, 2, 6, 6, dtype=torch.float64)
    (y1, y0), log_det = g([a, b])
    assert y1.shape == (2, 3, 6, 6) and g.dims_out == [(3, 6, 6), (3, 6, 6)]
    (ra, rb), log_det_rev = g([y1, y0], rev=True)
    torch.testing.assert_close(ra, a)
    torch.testing.assert_close(rb, b)
    torch.testing.assert_close(log_det, -log_det_rev)
    expected = g.nodes["flow"]([a[:, 1:]])[1] + g.nodes["mix"]([torch.rand(2, 6, 6, 6).double()])[1]
    torch.testing.assert_close(log_det, expected)
    assert g.inversion is Inversion.EXACT
    assert g.input_dims(g.dims_out) == [(4, 6, 6), (2, 6, 6)]


def test_graph_passes_check_block():
    g = Graph({"x": (4, 3, 3)})
    g.add("s", B.Split, "x", sections=[2, 2])
    g.add("f", B.AffineCoupling, "s:0", split=1, generator=gen(0))
    g.add("c", B.Concat, ["f", "s:1"])
    check_block(g.output("c"), (4, 3, 3))


def test_each_problem_names_its_node():
    cases = {
        "dangling": (
            lambda g: (g.add("s", B.Split, "x", sections=[2, 2]), g.output("s:0")),
            ["dangling output 's:1'"],
        ),
        "reused": (
            lambda g: (
                g.add("s", B.Split, "x", sections=[2, 2]),
                g.add("c", B.Concat, ["s:0", "s:0"]),
                g.output("c", "s:1"),
            ),
            ["output 's:0' is used 2 times (by node 'c', node 'c')"],
        ),
        "cycle": (
            lambda g: (
                g.add("p", B.Concat, ["x", "q"]),
                g.add("q", B.Split, "p", sections=[4, 4]),
                g.output("q:0"),
            ),
            ["cycle among nodes ['p', 'q']"],
        ),
        "shape": (
            lambda g: (g.add("f", B.AffineCoupling, "x", channels=6, split=2), g.output("f")),
            ["node 'f' (AffineCoupling) cannot take input (4, 6, 6)", "6 channels"],
        ),
        "unknown": (
            lambda g: (g.add("f", B.HaarDownscale, "y", group=1), g.output("f")),
            ["node 'f': input 'y:0' refers to no node or graph input", "dangling output 'x:0'"],
        ),
    }
    for name, (build, needles) in cases.items():
        g = Graph({"x": (4, 6, 6)})
        with pytest.raises(GraphError) as info:
            build(g)
        for needle in needles:
            assert needle in str(info.value), (name, str(info.value))


def test_all_problems_reported_at_once():
    g = Graph({"x": (4, 6, 6)})
    g.add("s", B.Split, "x", sections=[2, 2])
    g.add("bad", B.InvConv1x1, "s:0", channels=3)  # shape mismatch
    g.add("c", B.Concat, ["s:1", "s:1"])  # reuse
    g.add("loop1", B.Concat, ["loop2", "c"], sections=[8, 4])  # cycle
    g.add("loop2", B.Split, "loop1", sections=[8, 4])
    problems = g.problems()
    assert not g.built  # checking builds nothing
    text = "\n".join(problems)
    assert "node 'bad' (InvConv1x1)" in text
    assert "'s:1' is used 2 times" in text
    assert "cycle among nodes ['loop1', 'loop2']" in text
    assert "no outputs" in text
    assert len(problems) >= 4
    with pytest.raises(RuntimeError, match="not built"):
        g(torch.rand(1, 4, 6, 6))
    with pytest.raises(GraphError) as info:
        g.build()
    assert info.value.problems == problems


def test_problems_then_build_and_the_deprecated_validate():
    g = Graph({"x": (4, 6, 6)})
    g.add("s", B.Split, "x", sections=[2, 2])
    g.add("c", B.Concat, ["s:1", "s:0"])
    assert "the graph has no outputs: call Graph.output(...)" in g.problems()
    g.output_refs = ["c:0"]  # declared, not yet built
    assert g.problems() == [] and not g.built
    with pytest.warns(DeprecationWarning, match="Graph.problems"):
        assert g.validate() == []
    assert g.built
    x = torch.rand(2, 4, 6, 6)
    assert torch.equal(g(x), torch.cat([x[:, 2:], x[:, :2]], 1))


def test_names_are_checked():
    g = Graph({"x": (4, 6, 6)})
    with pytest.raises(ValueError, match="may not contain"):
        g.add("a:b", B.Split, "x", sections=[4])
    g.add("a", B.Split, "x", sections=[4])
    with pytest.raises(ValueError, match="already used"):
        g.add("a", B.Split, "x", sections=[4])


def test_json_round_trip_rebuilds_an_equal_graph():
    g = two_branch(seed=3)
    perturb_parameters(g, 0.05, gen(4))
    text = json.dumps(g.get_config())
    h = block_from_config(json.loads(text))
    assert isinstance(h, Graph) and h.summary() == g.summary()
    h.load_state_dict(g.state_dict())
    xs = [torch.rand(1, 4, 6, 6), torch.rand(1, 2, 6, 6)]
    for a, b in zip(g(xs)[0], h(xs)[0], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "build",
    [
        lambda: presets.win(6, 3, blocks=1, size=(16, 16)),
        lambda: presets.win_naive(3, 3, scale=2, blocks=2, size=(16, 16)),
        lambda: presets.iicnet(2, blocks=2, width=4, downscale="haar", size=(8, 8)),
    ],
)
def test_json_round_trip_of_presets(build):
    net = build()
    perturb_parameters(net, 0.01, gen(0))
    clone = block_from_config(json.loads(json.dumps(net.get_config())))
    assert isinstance(clone, RICNet) and clone.summary() == net.summary()
    clone.load_state_dict(net.state_dict())
    x = torch.rand(1, *net.dims_in[0])
    net.eval(), clone.eval()
    assert torch.equal(net(x), clone(x))


def test_config_export_errors():
    from torch import nn

    block = B.AffineCoupling(channels=4, subnet_constructor=lambda i, o: nn.Conv2d(i, o, 1))
    with pytest.raises(
        ValueError, match=r"AffineCoupling: constructor argument .* cannot be exported"
    ):
        block.get_config()
    with pytest.raises(KeyError, match="unknown block type 'Nope'"):
        block_from_config({"type": "Nope", "args": {}})


def _damaged_configs(config):
    """Copies of a Sequence-of-Graph config with one part missing or wrong, and what the
    error must name."""
    graph = config["nodes"][0]
    yield {k: v for k, v in config.items() if k != "dims"}, r"Sequence config needs .*'dims'"
    bad = json.loads(json.dumps(config))
    del bad["nodes"][0]["outputs"]
    yield bad, r"Graph config needs .*\['outputs'\] missing"
    bad = json.loads(json.dumps(config))
    del bad["nodes"][0]["nodes"][0]["block"]
    yield bad, r"Graph node config needs .*\['block'\] missing"
    bad = json.loads(json.dumps(config))
    node = bad["nodes"][0]["nodes"][-1]["block"]
    node["args"]["bogus"] = 1
    yield bad, rf"cannot build {node['type']} from .*bogus"
    bad = json.loads(json.dumps(config))
    bad["nodes"][0]["nodes"][-1]["block"]["args"] = [1]
    yield bad, r"'args' must be a dict"
    assert graph["type"] == "Graph"


def test_damaged_configs_name_what_is_wrong():
    g = Graph({"x": (4, 4, 4)})
    g.add("s", B.Split, "x", sections=[2, 2])
    g.add("c", B.AffineCoupling, "s:1", split=1)
    g.add("m", B.Concat, ["s:0", "c"])
    g.output("m")
    net = Sequence(4, 4, 4).append(g)
    config = json.loads(json.dumps(net.get_config()))
    block_from_config(config)  # the intact config builds
    for bad, needle in _damaged_configs(config):
        with pytest.raises(ValueError, match=needle):
            block_from_config(bad)


def test_sequence_and_graph_nest():
    inner = Sequence(2, 4, 4).append(B.AffineCoupling, split=1)
    g = Graph({"x": (4, 4, 4)})
    g.add("s", B.Split, "x", sections=[2, 2])
    g.add("chain", inner, "s:1")
    g.add("c", B.Concat, ["s:0", "chain"])
    g.output("c")
    outer = Sequence(4, 4, 4).append(g).append(B.HaarDownscale, group=4)
    assert outer.dims_out == [(16, 2, 2)]
    x = torch.rand(1, 4, 4, 4)
    torch.testing.assert_close(outer.inverse()(outer(x)), x)


def test_summary_mermaid_repr():
    g = two_branch()
    text = g.summary()
    assert "merge" in text and "split:0, b:0, flow:0" in text and "(6, 6, 6)" in text
    mermaid = g.to_mermaid()
    assert mermaid.startswith("flowchart TD")
    assert 'in_b -->|"(2, 6, 6)"| n_merge' in mermaid
    assert 'n_halves -->|"(3, 6, 6)"| out_0' in mermaid
    assert "(flow) AffineCoupling" in repr(g)
    assert g._repr_html_().count("<tr>") == 1 + len(g.order)


def test_summary_rows_have_the_documented_keys():
    from invblocks.container import NodeInfo, NodeRow

    g = Graph({"x": (4, 6, 6)})
    g.add("s", B.Split, "x", sections=[2, 2])
    g.add("c", B.Concat, ["s:1", "s:0"])
    g.output("c")
    seq = Sequence((3, 6, 6)).append(B.InvConv1x1).append(B.HaarDownscale)
    keys = set(NodeRow.__annotations__)
    for rows in (g.summary_rows(), seq.summary_rows()):
        assert rows and all(set(r) <= keys for r in rows)
    assert [r["name"] for r in g.summary_rows()] == ["s", "c"]
    assert seq.summary_rows()[1]["output"] == "(12, 3, 3)"
    assert NodeInfo is NodeRow  # the old name, for one release
