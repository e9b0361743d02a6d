"""Tiled embedding and restoration: any image size within a memory budget, the same result.

A RIC body made of convolutions, squeezes and couplings is local: each embedding pixel
depends on a window of input pixels, its **receptive field**, and each restored pixel on a
window of embedding pixels. :func:`plan` measures both from the network itself, node by
node: each node of the body is copied with perturbed weights (so that no zero weight hides a
dependency: trained or not, a convolution's reach is its structure's), and the gradient of one
output pixel shows which input pixels it reads; the radii add up along the chain, scaled by
each node's downscaling. It also checks that each node computes the same thing on a crop as
on the whole (no global statistics, no dependence on the image's centre or size), at crop
offsets of the network's period; a network that fails is refused with the reason.

:func:`tiled` runs a function tile by tile: each tile is read with a halo of at least the
function's receptive field around it, so its core is computed from the same pixels as without
tiles, and only the core is kept. :func:`run_nodes` runs a whole body that way one node at a
time (each node tiled with its own halo, the whole image between nodes): a deep network's
receptive field is hundreds of pixels, and tiling the whole body with it would compute each
tile's halo many times over, while one coupling reads 10 pixels around. The result equals the
untiled one up to float rounding (the convolutions' arithmetic may differ with the input's
size).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from .block import Block

__all__ = [
    "NodeReach",
    "NotTileable",
    "TilePlan",
    "count",
    "nodes",
    "plan",
    "run_nodes",
    "tile_count",
    "tiled",
]

_PROBE_SIDES = (32, 64, 128, 256)
"""Probe sizes (node input pixels) tried in turn for a node's receptive field."""


class NotTileable(ValueError):
    """The network cannot be tiled exactly; the message says why."""


@attrs.frozen
class NodeReach:
    """What one node of a body reads around each of its outputs.

    Attributes:
        forward: Node input pixels on each side of an output pixel's position.
        inverse: Node output pixels on each side, for its inverse.
        factor: Node input pixels per node output pixel (2 for a x2 downscale).
    """

    forward: int
    inverse: int
    factor: float


@attrs.frozen
class TilePlan:
    """How a network is tiled.

    Attributes:
        halo: Input pixels on each side of an embedding tile that its values depend on.
        halo_inverse: Embedding pixels on each side of a restored tile that it depends on.
        unit: Tiles start at multiples of this (input pixels): the network's period
            (its size multiple, and twice it for position-dependent blocks such as a
            checkerboard).
        scale: Input pixels per embedding pixel.
        nodes: Each node's own reach, in the order of :func:`nodes`.
    """

    halo: int
    halo_inverse: int
    unit: int
    scale: int
    nodes: tuple[NodeReach, ...] = ()


def nodes(body: nn.Module) -> list[Block]:
    """The nodes of ``body`` that :func:`plan` measures and :func:`run_nodes` runs one at a
    time: nested sequences flattened; other containers (graphs) and blocks are nodes
    themselves. :class:`NotTileable` for a module that is not a block."""
    return list(_nodes(body))


def _nodes(body: nn.Module) -> Iterator[Block]:
    """The body's nodes in order, nested sequences flattened; other containers (graphs) and
    blocks are nodes themselves."""
    inner = getattr(body, "nodes", None)
    if isinstance(inner, nn.ModuleList) and hasattr(body, "_chain"):
        for node in inner:
            yield from _nodes(node)
    elif isinstance(body, Block):
        yield body
    else:
        raise NotTileable(f"this network cannot be tiled: {type(body).__name__} is not a block")


def _perturbed(node: Block, generator: torch.Generator) -> Block:
    """A float64 copy of ``node`` whose floating parameters carry small random noise."""
    twin = copy.deepcopy(node).double().eval()
    with torch.no_grad():
        for p in twin.parameters():
            if p.is_floating_point():
                p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return twin


def _support_radius(fn: Callable[[Tensor], Tensor], x: Tensor, factor: float) -> int | None:
    """The radius (input pixels) of the input region the centre output pixel of ``fn(x)``
    depends on, measured around the centre's position in the input; ``None`` when it reaches
    the probe's border (too large, or global)."""
    with torch.enable_grad():  # also when called under no_grad (inference)
        x = x.clone().requires_grad_(True)
        y = fn(x)
        ci, cj = y.shape[-2] // 2, y.shape[-1] // 2
        y[..., ci, cj].sum().backward()
    assert x.grad is not None
    used = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = torch.nonzero(used.any(dim=1)).flatten()
    cols = torch.nonzero(used.any(dim=0)).flatten()
    if len(rows) == 0:
        return 0
    h, w = x.shape[-2:]
    if rows[0] == 0 or cols[0] == 0 or rows[-1] == h - 1 or cols[-1] == w - 1:
        return None
    # distances between pixel centres: the output pixel's centre in input pixels, the
    # farthest input pixel's centre it reads
    centre_i, centre_j = (ci + 0.5) * factor, (cj + 0.5) * factor
    reach = max(
        centre_i - (float(rows[0]) + 0.5), float(rows[-1]) + 0.5 - centre_i,
        centre_j - (float(cols[0]) + 0.5), float(cols[-1]) + 0.5 - centre_j,
    )  # fmt: skip
    return max(0, math.ceil(reach - 1e-9))


def _consistent(
    fn: Callable[[Tensor], Tensor], x: Tensor, offset: int, factor: float, radius: int
) -> bool:
    """Whether ``fn`` computes on crops of ``x`` what it computes on the whole, away from the
    crops' borders by ``radius``: crops that drop ``offset`` input pixels from the top left,
    from the bottom right, and both (a block that looks at the image's centre or size sees
    another image in at least one of them)."""
    whole = fn(x)
    margin = math.ceil(radius / factor) + 1
    for top, bottom in ((offset, 0), (0, offset), (offset, 2 * offset)):
        crop = x[..., top : x.shape[-2] - bottom, top : x.shape[-1] - bottom]
        if min(crop.shape[-2:]) < 1:
            continue
        try:
            part = fn(crop)
        except (RuntimeError, ValueError):  # a crop too small for the node (a 3x3 on 2x2)
            continue
        t, b = round(top / factor), round(bottom / factor)
        a = whole[..., t + margin : whole.shape[-2] - b - margin,
                  t + margin : whole.shape[-1] - b - margin]  # fmt: skip
        p = part[..., margin:-margin, margin:-margin]
        if a.numel() == 0 or a.shape != p.shape:
            continue  # too small to compare
        if not torch.allclose(a, p, rtol=1e-6, atol=1e-8):
            return False
    return True


def plan(body: Block, channels: int, multiple: int, *, seed: int = 0) -> TilePlan:
    """The :class:`TilePlan` of a body taking ``channels``-channel inputs whose sides are
    multiples of ``multiple``: receptive fields measured node by node in float64 on
    perturbed copies (see the module).

    Raises:
        NotTileable: naming the node that reads its whole input or computes differently on
            a crop.
    """
    g = torch.Generator().manual_seed(seed)
    unit = 2 * multiple  # the period of position-dependent blocks (a checkerboard) included
    factor = 1.0  # input pixels per pixel at the current node's input
    halo = halo_inverse_px = 0.0
    reaches: list[NodeReach] = []
    dims: Any = [(channels, 8 * unit, 8 * unit)]
    scale_in = 8 * unit
    for node in _nodes(body):
        out_dims = node.output_dims(dims)
        node_factor = dims[0][-1] / out_dims[0][-1]  # > 1 for a downscale
        twin = _perturbed(node, g)
        found = None
        for side in _PROBE_SIDES:
            side = max(side, math.ceil(side / unit) * unit) if factor < unit else side
            probe_dims = [(dims[0][0], side, side)]
            try:
                probe_out = node.output_dims(probe_dims)
            except (ValueError, TypeError):
                continue
            x = torch.rand(1, *probe_dims[0], generator=g, dtype=torch.float64)
            e = torch.rand(1, *probe_out[0], generator=g, dtype=torch.float64)

            def forward(t: Tensor, twin: Block = twin) -> Tensor:
                return twin([t])[0][0]

            def inverse(t: Tensor, twin: Block = twin) -> Tensor:
                return twin([t], rev=True)[0][0]

            r_f = _support_radius(forward, x, node_factor)
            r_i = _support_radius(inverse, e, 1 / node_factor)
            if r_f is None or r_i is None:
                continue
            step = max(1, round(unit / factor))
            with torch.no_grad():
                if not _consistent(forward, x, step, node_factor, r_f) or not _consistent(
                    inverse, e, max(1, round(step / node_factor)), 1 / node_factor, r_i
                ):
                    raise NotTileable(
                        f"this network cannot be tiled exactly: its node {node._name()} "
                        "computes something else on a part of an image than on the whole "
                        "(it depends on the image's size or centre)"
                    )
            found = (r_f, r_i)
            break
        if found is None:
            raise NotTileable(
                f"this network cannot be tiled exactly: its node {node._name()} reads more "
                f"than {_PROBE_SIDES[-1] // 2} pixels around each of its outputs (the whole "
                "image?)"
            )
        r_f, r_i = found
        reaches.append(NodeReach(forward=r_f, inverse=r_i, factor=node_factor))
        halo += r_f * factor  # in input pixels
        halo_inverse_px += r_i * factor * node_factor  # node output pixels -> input pixels
        factor *= node_factor
        dims = out_dims
    scale = round(factor)
    del scale_in
    return TilePlan(
        halo=math.ceil(halo),
        halo_inverse=math.ceil(halo_inverse_px / scale),
        unit=unit,
        scale=scale,
        nodes=tuple(reaches),
    )


def _windows(length: int, core: int, halo: int, unit: int) -> Iterator[tuple[int, int, int, int]]:
    """``(start, stop, read_start, read_stop)`` of each tile along one side: the core
    ``[start, stop)`` and the window read around it, the halo rounded up to ``unit``."""
    halo = math.ceil(halo / unit) * unit
    for start in range(0, length, core):
        stop = min(start + core, length)
        yield start, stop, max(0, start - halo), min(length, stop + halo)


def count(length: int, tile: int) -> int:
    """How many tiles of ``tile`` pixels cover ``length``."""
    return -(-length // tile)


def tiled(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    tile: int,
    halo: int,
    unit: int,
    scale: float,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """``fn(x)`` computed tile by tile: ``x`` ``(1, C, H, W)`` is cut into cores of ``tile``
    pixels (a multiple of ``unit``), each read with ``halo`` pixels around it, and the cores
    of ``fn``'s outputs (``scale`` input pixels per output pixel: 2 for a x2 downscale, 0.5 for
    its inverse) are put together. ``progress(k)`` is called after each of the tiles."""
    if tile % unit:
        raise ValueError(f"tile {tile} is not a multiple of {unit}")
    h, w = x.shape[-2:]
    out: Tensor | None = None
    done = 0
    for i0, i1, r0, r1 in _windows(h, tile, halo, unit):
        for j0, j1, s0, s1 in _windows(w, tile, halo, unit):
            y = fn(x[..., r0:r1, s0:s1]).to(x.device)  # the whole result stays where x is
            if out is None:
                out = y.new_empty((*y.shape[:-2], round(h / scale), round(w / scale)))
            a, b = round((i0 - r0) / scale), round((j0 - s0) / scale)
            rows, cols = round((i1 - i0) / scale), round((j1 - j0) / scale)
            top, left = round(i0 / scale), round(j0 / scale)
            core = y[..., a : a + rows, b : b + cols]
            out[..., top : top + rows, left : left + cols] = core
            done += 1
            if progress is not None:
                progress(done)
    assert out is not None
    return out


def run_nodes(
    body: Block,
    x: Tensor,
    tile_plan: TilePlan,
    *,
    inverse: bool,
    tile_side: Callable[[int, int, float], int],
    prepare: Callable[[Tensor], Tensor] = lambda t: t,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """``body`` (or its inverse) on ``x`` ``(1, C, H, W)``, one node at a time, each node in
    tiles (:func:`tiled`) read with that node's own halo; the whole image between nodes.

    ``tile_side(halo, unit, factor)`` chooses a node's tile (a multiple of ``unit``, in the
    pixels the node reads, with ``factor`` input pixels of the body per such pixel) from its
    halo; ``prepare`` is applied to each tile before the node (a memory layout);
    ``progress(1)`` is called after each tile of each node. ``tile_plan`` is the body's
    (:func:`plan`)."""
    chain = nodes(body)
    if len(chain) != len(tile_plan.nodes):
        raise ValueError(f"the plan has {len(tile_plan.nodes)} nodes and the body {len(chain)}")
    factors = [1.0]  # body input pixels per pixel at each node's input
    for reach in tile_plan.nodes:
        factors.append(factors[-1] * reach.factor)
    order = range(len(chain) - 1, -1, -1) if inverse else range(len(chain))
    for k in order:
        node, reach = chain[k], tile_plan.nodes[k]
        if inverse:  # the node's output pixels are read
            at, halo, scale = factors[k + 1], reach.inverse, 1 / reach.factor
        else:
            at, halo, scale = factors[k], reach.forward, reach.factor
        unit = max(1, round(tile_plan.unit / at))
        if not inverse and reach.factor > 1:  # a downscale's cells stay whole
            unit = math.lcm(unit, round(reach.factor))

        def step(t: Tensor, node: Block = node) -> Tensor:
            return node([prepare(t)], rev=inverse)[0][0]

        side = tile_side(halo, unit, at)
        x = tiled(step, x, tile=side, halo=halo, unit=unit, scale=scale,
                  progress=None if progress is None else lambda _k: progress(1))  # fmt: skip
    return x


def tile_count(
    tile_plan: TilePlan,
    height: int,
    width: int,
    *,
    inverse: bool,
    tile_side: Callable[[int, int, float], int],
) -> int:
    """How many tiles :func:`run_nodes` runs on a ``height x width`` input (body input pixels
    forward, body output pixels inverse), all nodes together."""
    factors = [1.0]
    for reach in tile_plan.nodes:
        factors.append(factors[-1] * reach.factor)
    if inverse:  # the embedding's size back to the input's
        height, width = round(height * factors[-1]), round(width * factors[-1])
    total = 0
    for k, reach in enumerate(tile_plan.nodes):
        at = factors[k + 1] if inverse else factors[k]
        halo = reach.inverse if inverse else reach.forward
        unit = max(1, round(tile_plan.unit / at))
        if not inverse and reach.factor > 1:
            unit = math.lcm(unit, round(reach.factor))
        side = tile_side(halo, unit, at)
        total += count(round(height / at), side) * count(round(width / at), side)
    return total
