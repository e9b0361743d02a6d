"""invblocks-camera: RAW <-> sRGB as a reversible image conversion task."""

from .pipeline import CameraParams, pack_bayer, render, unpack_bayer, unprocess

__all__ = ["CameraParams", "pack_bayer", "render", "unpack_bayer", "unprocess"]
