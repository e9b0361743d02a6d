"""Write the small intersphinx inventories the docs link against.

The documentation builds without network access, so the inventories of Python and PyTorch
cannot be downloaded at build time. These hand-kept lists cover the external names the
invblocks API mentions; run this script after adding one (``python make_inventories.py``).
"""

import zlib
from pathlib import Path

PYTHON = [
    ("int", "py:class", "library/functions.html#int"),
    ("float", "py:class", "library/functions.html#float"),
    ("str", "py:class", "library/stdtypes.html#str"),
    ("bool", "py:class", "library/functions.html#bool"),
    ("dict", "py:class", "library/stdtypes.html#dict"),
    ("list", "py:class", "library/stdtypes.html#list"),
    ("tuple", "py:class", "library/stdtypes.html#tuple"),
    ("type", "py:class", "library/functions.html#type"),
    ("object", "py:class", "library/functions.html#object"),
    ("None", "py:data", "library/constants.html#None"),
    ("pathlib.Path", "py:class", "library/pathlib.html#pathlib.Path"),
    ("os.PathLike", "py:class", "library/os.html#os.PathLike"),
    ("typing.Any", "py:data", "library/typing.html#typing.Any"),
    ("typing.Literal", "py:data", "library/typing.html#typing.Literal"),
    (
        "collections.abc.Callable",
        "py:class",
        "library/collections.abc.html#collections.abc.Callable",
    ),
    (
        "collections.abc.Iterable",
        "py:class",
        "library/collections.abc.html#collections.abc.Iterable",
    ),
    (
        "collections.abc.Iterator",
        "py:class",
        "library/collections.abc.html#collections.abc.Iterator",
    ),
    (
        "collections.abc.Sequence",
        "py:class",
        "library/collections.abc.html#collections.abc.Sequence",
    ),
    ("enum.Enum", "py:class", "library/enum.html#enum.Enum"),
    ("ValueError", "py:exception", "library/exceptions.html#ValueError"),
    ("KeyError", "py:exception", "library/exceptions.html#KeyError"),
    ("TypeError", "py:exception", "library/exceptions.html#TypeError"),
    ("FileNotFoundError", "py:exception", "library/exceptions.html#FileNotFoundError"),
    ("AssertionError", "py:exception", "library/exceptions.html#AssertionError"),
    ("FloatingPointError", "py:exception", "library/exceptions.html#FloatingPointError"),
    ("RuntimeError", "py:exception", "library/exceptions.html#RuntimeError"),
    ("IndexError", "py:exception", "library/exceptions.html#IndexError"),
]

TORCH = [
    ("torch.Tensor", "py:class", "tensors.html#torch.Tensor"),
    ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
    ("torch.Generator", "py:class", "generated/torch.Generator.html#torch.Generator"),
    ("torch.dtype", "py:class", "tensor_attributes.html#torch.dtype"),
    ("torch.Size", "py:class", "size.html#torch.Size"),
    (
        "torch.nn.PixelUnshuffle",
        "py:class",
        "generated/torch.nn.PixelUnshuffle.html#torch.nn.PixelUnshuffle",
    ),
    (
        "torch.nn.PixelShuffle",
        "py:class",
        "generated/torch.nn.PixelShuffle.html#torch.nn.PixelShuffle",
    ),
    ("torch.utils.data.Dataset", "py:class", "data.html#torch.utils.data.Dataset"),
    ("torch.utils.data.Sampler", "py:class", "data.html#torch.utils.data.Sampler"),
    ("torch.utils.data.DataLoader", "py:class", "data.html#torch.utils.data.DataLoader"),
    ("torch.optim.Optimizer", "py:class", "optim.html#torch.optim.Optimizer"),
    ("torch.autograd.Function", "py:class", "autograd.html#torch.autograd.Function"),
    (
        "torch.nn.parallel.DistributedDataParallel",
        "py:class",
        "generated/torch.nn.parallel.DistributedDataParallel.html#torch.nn.parallel.DistributedDataParallel",
    ),
]


def write(path: Path, project: str, version: str, entries: list) -> None:
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in entries)
    head = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path.write_bytes(head.encode() + zlib.compress(body.encode()))


if __name__ == "__main__":
    here = Path(__file__).parent
    write(here / "python.inv", "Python", "3", PYTHON)
    write(here / "torch.inv", "PyTorch", "stable", TORCH)
