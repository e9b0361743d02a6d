"""The built-in RIC task plugins of invblocks, registered through the ``invblocks`` entry points."""
