"""Sphinx configuration of the invblocks documentation."""

import invblocks

project = "invblocks"
author = "the invblocks authors"
release = version = invblocks.__version__
copyright = "2026, the invblocks authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
exclude_patterns = ["_build", "_autosummary/*.tmp", "Thumbs.db", ".DS_Store"]
html_theme = "furo"
html_title = f"invblocks {release}"

autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_custom_sections = [("Shapes", "notes_style"), ("Arguments", "params_style")]

# The build runs offline, so intersphinx reads small inventories kept in docs/_inventories
# (see make_inventories.py there) instead of downloading Python's and PyTorch's.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", "_inventories/python.inv"),
    "torch": ("https://docs.pytorch.org/docs/stable", "_inventories/torch.inv"),
}

# Cross-references must resolve; names from other projects that the inventories do not cover
# (annotations' short aliases, FrEIA, attrs, pluggy) are ignored here.
nitpicky = True
_EXTERNAL = "torch|numpy|np|pluggy|attrs|attr|pathlib|typing|collections|os|enum|abc|PIL|FrEIA"
_ALIASES = (
    "Tensor|Path|Any|Callable|Iterable|Iterator|Sequence|Literal|Dims|Item|T|SampleFn"
    "|SubnetConstructor|Order|TrainMode|Reduction|DataLoader|Dataset|Sampler|Generator|Module"
    "|Enum|DataSplit|Task|Block|Inversion|ChannelOrder|TermFn"
)
nitpick_ignore_regex = [
    (r"py:.*", rf"({_EXTERNAL}|hypothesis|st)(\..*)?"),
    (r"py:.*", rf"({_ALIASES})"),
    (r"py:.*", r"(int|float|str|bool|dict|list|tuple|None|type|object|callable|optional)"),
    (
        r"py:.*",
        r"(InvertibleModule|GLOWCouplingBlock|invblocks\.blocks\.haar\._SpaceToDepth|invblocks\.blocks\.prior\._Shear|invblocks\.registry\.[TV])",
    ),
    (r"py:.*", r"(nn\.Module|torch\.(nn\.Module|Generator|Tensor|dtype|Size))"),
]

myst_enable_extensions = ["colon_fence"]
nb_execution_mode = "force"
nb_execution_timeout = 180
nb_execution_raise_on_error = True
nb_merge_streams = True
