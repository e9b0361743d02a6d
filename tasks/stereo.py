"""Binocular mononizing (IICNet mono-01): a stereo pair into its left view.

Slots: ``[left; right]``. No flips (they would break the stereo geometry).

Default data (:func:`invblocks.data.default_stereo`), split by scene: training on the 12 real
OAK-D Lite pairs ``stereodemo`` ships and pairs *derived* from photographs by a horizontal shift
(a fronto-parallel stand-in, not real stereo); validation on the real Middlebury motorcycle pair
scikit-image ships, a scene training never sees. User data: a Flickr1024 folder, or left/right
folders or side-by-side images (:func:`invblocks.data.read_stereo`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from invblocks import Task, TrainDefaults, hookimpl, presets
from invblocks.data import DataSplit, default_stereo, flickr1024, read_stereo, split_items
from invblocks.sampling import SampleRequest, slot_reference

from ._common import SEVERAL_IMAGES, cpu_recipe, hidden_recipe


def sample_pair(request: SampleRequest) -> list[Tensor]:
    """Both views of one pair, cropped alike and not flipped (a flip swaps the disparity)."""
    left, right = request.pick()
    return request.crop_window([left, right], flip=False)


left_view = slot_reference(0)  # Slot 0, the left view.


def open_stereo(path: Path) -> DataSplit:
    """Flickr1024 (``Train/``) if present, else left/right folders or side-by-side images."""
    if (Path(path) / "Train").is_dir():
        return flickr1024(path)
    train, val = split_items(read_stereo(path))
    return DataSplit(train=train, val=val, description=f"stereo pairs at {path}")


def _network(n: int, /, **kw: Any) -> Any:
    kw.setdefault("blocks", 16)
    return presets.iicnet(n, **kw)


MONONIZING = Task(
    name="mononizing",
    description="binocular mononizing: a stereo pair into its left view",
    inputs=2,
    default_inputs=2,
    sample=sample_pair,
    default_data=default_stereo,
    open_data=open_stereo,
    reference=left_view,
    network=_network,
    # the right view starts hidden in the residue of the left view's 8-bit image
    # (ResidueHiding): the untrained network already restores it far above the left view
    # repeated, on scenes it never saw; the couplings learn from there. A classical hiding:
    # the residue does not survive a JPEG (docs/tasks.md).
    train=hidden_recipe(),
    default_recipe="residue",
    recipes={"learned": cpu_recipe(losses=SEVERAL_IMAGES)},  # IICNet's start, learned
    reference_train=TrainDefaults(),
    margin_target=1.0,  # the right view 1 dB above the left view repeated
)


@hookimpl
def invblocks_register_tasks(registry: Any) -> None:
    registry.add_task(MONONIZING)
