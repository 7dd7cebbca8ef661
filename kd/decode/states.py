"""Combining the opaque decoder / LM states of the step API.

The step API (``init_state``, ``step``, ``select_state``) can re-index one state but not join two, and
search needs both: after a frame, hypotheses that emitted a token carry a freshly stepped state while the
others keep their old one. Rather than widen the pinned interface, :class:`StateBatcher` finds the batch
dimension of every tensor in a state once, by comparing ``init_state(2)`` with ``init_state(3)``, and
concatenates along it. A state may be any nesting of tuples, lists and dicts of tensors; leaves that do not
grow with the batch (constants, ``None``) are shared.
"""

from __future__ import annotations

from typing import Any

import torch


def _batch_dims(small: Any, large: Any, where: str) -> Any:
    """Mirrors the state's structure with the batch dimension of each tensor (``None`` if it has none)."""
    if isinstance(small, torch.Tensor):
        if not isinstance(large, torch.Tensor) or small.dim() != large.dim():
            raise TypeError(f"{where}: init_state returned states of different structure for batch 2 and 3")
        differ = [d for d in range(small.dim()) if small.shape[d] != large.shape[d]]
        if not differ:
            return None
        if len(differ) != 1 or (small.shape[differ[0]], large.shape[differ[0]]) != (2, 3):
            raise TypeError(
                f"{where}: cannot find the batch dimension of a state tensor "
                f"(shapes {tuple(small.shape)} for batch 2, {tuple(large.shape)} for batch 3)"
            )
        return differ[0]
    if isinstance(small, tuple | list):
        if type(small) is not type(large) or len(small) != len(large):
            raise TypeError(f"{where}: init_state returned states of different structure for batch 2 and 3")
        return type(small)(_batch_dims(s, g, where) for s, g in zip(small, large))
    if isinstance(small, dict):
        if not isinstance(large, dict) or small.keys() != large.keys():
            raise TypeError(f"{where}: init_state returned states of different structure for batch 2 and 3")
        return {k: _batch_dims(small[k], large[k], where) for k in small}
    return None


def _cat(a: Any, b: Any, dims: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return a if dims is None else torch.cat([a, b], dim=dims)
    if isinstance(a, tuple | list):
        return type(a)(_cat(x, y, d) for x, y, d in zip(a, b, dims))
    if isinstance(a, dict):
        return {k: _cat(a[k], b[k], dims[k]) for k in a}
    return a


class StateBatcher:
    """Joins and merges states of one step-API module (a decoder or an LM).

    Args:
        module: has ``init_state(batch_size, device)`` and ``select_state(state, index)``.
        device: where ``init_state`` builds its probe states.
    """

    def __init__(self, module: Any, device: torch.device | str) -> None:
        self.module = module
        name = type(module).__name__
        self._dims = _batch_dims(module.init_state(2, device), module.init_state(3, device), name)

    def cat(self, a: Any, b: Any) -> Any:
        """The state with the rows of ``a`` followed by the rows of ``b``."""
        return _cat(a, b, self._dims)

    def merge(self, old: Any, new: Any, source: torch.Tensor) -> Any:
        """Builds a state row by row from two states.

        Args:
            old: a state with R rows.
            new: a state with E rows.
            source: (M,) int64; entry m < R takes row m of ``old``, entry R + e takes row e of ``new``.
        Returns:
            a state with M rows.
        """
        return self.module.select_state(self.cat(old, new), source)
