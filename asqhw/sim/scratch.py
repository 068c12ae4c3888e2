"""Scratch arrays kept between calls of a layer, so that a repeated call allocates nothing."""

from __future__ import annotations

import numpy as np

__all__ = ["Scratch"]


class Scratch:
    """Named flat scratch arrays: one array per name, kept while its dtype and size stay the same."""

    def __init__(self):
        self._arrays = {}

    def get(self, name: str, dtype, size: int) -> np.ndarray:
        """The flat array ``name`` of ``size`` elements of ``dtype`` (contents undefined)."""
        key = (np.dtype(dtype).str, size)
        if self._arrays.get(name, (None,))[0] != key:
            self._arrays[name] = (key, np.empty(size, dtype=dtype))
        return self._arrays[name][1]
