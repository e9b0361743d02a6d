"""Image hiding (IICNet hide-01..04): 1-4 secret images in a cover image.

Slots: ``[cover; secret_1; ...]``, each a crop of a different photograph; the reference is
the cover. Default data: the photographs scikit-image ships; user data: a Flickr 2W-style
folder of photographs (:func:`invblocks.data.flickr2w`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from invblocks import Task, TrainDefaults, hookimpl, presets
from invblocks.data import default_photos, flickr2w
from invblocks.sampling import SampleRequest, common_size, slot_reference

from ._common import SEVERAL_IMAGES, cpu_recipe, hidden_recipe


def distinct_pieces(items: Sequence[Tensor], n: int, min_side: int = 1) -> Sequence[Tensor]:
    """``items`` when there are at least ``n``; else the photographs cut into halves across
    their longer side (the largest first) until there are ``n`` pieces, so that a sample's
    images are different pictures (two held-out photographs give a cover and three secrets
    as four halves), never the cover repeated as a secret. A half keeps both sides at least
    ``min_side`` (the crop); when no cut does, the pieces are fewer and a sample repeats
    them."""
    if len(items) >= n:  # the usual case, once per sample: no copy
        return items
    pieces = list(items)
    while len(pieces) < n:
        k = max(range(len(pieces)), key=lambda i: pieces[i].shape[-2] * pieces[i].shape[-1])
        h, w = pieces[k].shape[-2:]
        if min(min(h, w), max(h, w) // 2) < min_side:
            break
        im = pieces.pop(k)
        if w >= h:
            pieces[k:k] = [im[..., : w // 2], im[..., w // 2 : w // 2 * 2]]
        else:
            pieces[k:k] = [im[..., : h // 2, :], im[..., h // 2 : h // 2 * 2, :]]
    return pieces


def sample_cover_and_secrets(request: SampleRequest) -> list[Tensor]:
    """A cover and ``n - 1`` secrets: different photographs (or, in a split with fewer
    photographs than images per sample, different halves of them: :func:`distinct_pieces`),
    each with its own crop."""
    items = distinct_pieces(request.items, request.n_inputs, request.crop or 1)
    index = request.index
    if request.train:
        order = torch.randperm(len(items), generator=request.generator).tolist()
    else:
        order = [(index + k) % len(items) for k in range(len(items))]
    picks = [items[order[k % len(order)]] for k in range(request.n_inputs)]
    if request.crop is None:  # full images: the size they all have, centred
        picks = common_size(picks)
    # each image gets its own crop window (different photographs are not aligned)
    return [request.crop_window([im])[0] for im in picks]


cover = slot_reference(0)  # Slot 0, the cover.


def _network(n: int, /, preset: str = "iicnet", **kw: Any) -> Any:
    """IICNet (default), or WIN / WIN-Naive (``preset="win"`` / ``"win_naive"``)."""
    if preset == "win":
        return presets.win(3 * n, 3, **kw)
    if preset == "win_naive":
        return presets.win_naive(3 * n, 3, **kw)
    if preset != "iicnet":
        raise ValueError(
            f"hiding: preset must be 'iicnet', 'win' or 'win_naive'; received {preset!r}"
        )
    return presets.iicnet(n, **kw)


WIN_RECIPE = TrainDefaults(
    crop=64, batch=2, lr=5e-4, network={"preset": "win"}, losses=SEVERAL_IMAGES
)
"""WIN's hiding network (2.3 million parameters, the published one) on the default recipe's
crops and learning rate."""

HIDING = Task(
    name="hiding",
    description="image hiding: a cover and 1-4 secret images into the cover",
    inputs=(2, 5),
    default_inputs=2,
    sample=sample_cover_and_secrets,
    default_data=default_photos,
    open_data=flickr2w,
    reference=cover,
    network=_network,
    # the secrets start hidden in the residue of the cover's 8-bit image (ResidueHiding):
    # the untrained network already hides and restores them; docs/benchmarks.md. Its name
    # says what it is: a classical hiding in the low bits, which steganalysis detects.
    train=hidden_recipe(),
    default_recipe="residue",
    reference_train=TrainDefaults(),
    recipes={
        # IICNet learns the hiding, from the secrets' differences from the cover
        "learned": cpu_recipe(network={"init": "trivial", "prior": 1}, losses=SEVERAL_IMAGES),
        "win": WIN_RECIPE,
    },
)


@hookimpl
def invblocks_register_tasks(registry: Any) -> None:
    registry.add_task(HIDING)
