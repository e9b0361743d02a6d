"""The plugin hooks of invblocks (pluggy project name and entry-point group: ``invblocks``).

A plugin is a module (or object) with functions marked ``@invblocks.hookimpl`` whose names are
the hooks below, registered through an entry point in the ``invblocks`` group::

    [project.entry-points.invblocks]
    camera = "invblocks_camera.plugin"

Each hook receives a registry bound to the calling plugin, so everything it adds is recorded
with the plugin's name, and a duplicate name is an error naming both plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .plugins import PluginRegistry

__all__ = [
    "hookimpl",
    "hookspec",
    "invblocks_register_blocks",
    "invblocks_register_channels",
    "invblocks_register_importers",
    "invblocks_register_loss_terms",
    "invblocks_register_presets",
    "invblocks_register_tasks",
]

hookspec = pluggy.HookspecMarker("invblocks")
hookimpl = pluggy.HookimplMarker("invblocks")


@hookspec
def invblocks_register_tasks(registry: PluginRegistry) -> None:
    """Add RIC tasks with ``registry.add_task(task)``.

    ``task`` is an :class:`invblocks.ric.task.Task`; its name must be unique across all plugins.

    .. versionadded:: 0.1
    """


@hookspec
def invblocks_register_blocks(registry: PluginRegistry) -> None:
    """Add block classes with ``registry.add_block(cls, name=None)``.

    Registered blocks can be rebuilt from JSON network configs
    (:func:`invblocks.registry.block_from_config`), so networks that use a plugin's blocks
    round-trip through checkpoints. Names must be unique across the core and all plugins.

    .. versionadded:: 0.1
    """


@hookspec
def invblocks_register_loss_terms(registry: PluginRegistry) -> None:
    """Add loss terms every task can weight with ``registry.add_loss_term(term)``.

    ``term`` is an :class:`invblocks.ric.losses.LossTerm` (``@invblocks.ric.losses.loss_term(name)``
    on ``f(result, batch) -> Tensor``); its name must be unique across the core and all
    plugins. A run weights it with ``--set losses.<name>=<weight>`` (terms are off unless
    weighted). A term only one task uses belongs in that task's ``loss_terms`` instead.

    .. versionadded:: 0.2
    """


@hookspec
def invblocks_register_channels(registry: PluginRegistry) -> None:
    """Add channels with ``registry.add_channel(cls, name=None)``.

    ``cls`` subclasses :class:`invblocks.ric.channel.Channel` (a training surrogate, a deployment
    face and its payload files); a run trains through it with ``--set channel=<name>``.
    Names must be unique across the core and all plugins.

    .. versionadded:: 0.2
    """


@hookspec
def invblocks_register_presets(registry: PluginRegistry) -> None:
    """Add network presets with ``registry.add_preset(fn, name=None)``: functions that
    build a :class:`invblocks.ric.network.RICNet` (listed in :data:`invblocks.presets.PRESETS`).

    .. versionadded:: 0.2
    """


@hookspec
def invblocks_register_importers(registry: PluginRegistry) -> None:
    """Add ``import-weights`` methods with ``registry.add_importer(name, fn)``: ways to turn
    a paper's published checkpoint into an invblocks model folder.

    ``fn(state, *, config, path)`` receives the file's tensors as
    :func:`invblocks.published.read_state_dict` reads them (never unpickled as code, the
    ``module.`` prefix removed, a nested ``state_dict`` taken out), the user's ``--config``
    (``None`` unless given) and the file's path, and returns an
    :class:`invblocks.published.ImportedModel`: the network holding the weights, the name of
    a registered task, the images per embedding and a short description. It raises
    ``ValueError`` in one sentence naming the first key that is missing, unexpected or of the
    wrong shape (see :class:`invblocks.published.Importer`). The core then writes the model
    folder, and ``invblocks import-weights <name> FILE -o DIR`` and
    :func:`invblocks.published.import_weights` take the method. Names must be unique across
    the core (``iicnet``, ``win``, ``win-naive``) and all plugins.

    .. versionadded:: 0.2
    """
