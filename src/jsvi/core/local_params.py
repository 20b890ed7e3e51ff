"""Local parameters and ``subsample``: a ``param`` declared with ``event_dim``
inside vectorized plates, and data passed to ``subsample(data, event_dim)``, are
indexed by each enclosing plate's subsample indices.

A local parameter keeps its full size (it is stored, optimized and returned by
``get_params`` with every plate element); inside the plate it reads as the rows
of the current subsample, so a step's gradient reaches only those rows.

May import: ``jsvi.core.runtime``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import PyTree, shape_of
from jsvi.core.runtime import CondIndepStackFrame, Message, apply_stack
from jsvi.errors import ArgumentError, ShapeError

__all__ = ["enclosing_plates", "subsample", "subsample_param"]


def enclosing_plates() -> list[tuple[CondIndepStackFrame, Any]]:
    """``(frame, subsample indices)`` of every enclosing vectorized plate,
    innermost first."""
    msg = Message(kind="_frames", name="_jsvi/frames", kwargs={"indices": {}})
    apply_stack(msg)
    indices = msg.kwargs["indices"]
    return [(f, indices.get(f.name)) for f in msg.cond_indep_stack if f.vectorized]


def subsample(data: PyTree, event_dim: int) -> PyTree:
    """Select the rows of ``data`` that the enclosing plates' subsamples pick.

    For each enclosing vectorized plate at ``dim``, ``data``'s dim
    ``dim - event_dim`` must have the plate's full size (or 1); inside a
    subsampled plate it is indexed by the plate's indices, so a model given the
    full data set can subsample it where it is used (NumPyro's ``subsample``).
    Outside plates ``data`` comes back unchanged.

    Args:
        data: an array (or pytree of arrays) of full-size data.
        event_dim: how many rightmost dims of ``data`` form one data point.

    Raises:
        ShapeError: ``data``'s size at a plate's dim is neither its size nor 1.

    Example:
        >>> import jax.numpy as jnp, jsvi
        >>> x = jnp.arange(10.0).reshape(5, 2)
        >>> with jsvi.plate("data", 5, subsample=jnp.array([4, 0])):
        ...     jsvi.subsample(x, event_dim=1).tolist()
        [[8.0, 9.0], [0.0, 1.0]]
    """
    if event_dim is None:
        raise ArgumentError(
            "subsample: event_dim is required (the number of rightmost dims of one "
            "data point; 0 for scalars)."
        )
    return _subsample_leaves("subsample", data, event_dim)


def subsample_param(name: str, value: PyTree, event_dim: int | None) -> PyTree:
    """The rows of a local param ``value`` that the enclosing plates' subsamples
    select (``value`` itself outside plates or without ``event_dim``).

    For a plate at ``dim`` the param's plate axis is ``dim - event_dim``. There a
    leaf must have the plate's full size (or 1, to broadcast); a leaf with fewer
    dims is left as is, as a global parameter.

    Raises:
        ShapeError: a leaf's size at a plate's axis is neither that plate's size
            nor 1.
    """
    if event_dim is None:
        return value
    return _subsample_leaves(f"param {name!r}", value, event_dim)


def _subsample_leaves(where: str, value: PyTree, event_dim: int) -> PyTree:
    if not isinstance(event_dim, int) or isinstance(event_dim, bool) or event_dim < 0:
        raise ArgumentError(f"{where}: event_dim must be an int >= 0, got {event_dim!r}.")
    plates = enclosing_plates()
    if not plates:
        return value

    def index(leaf: Any) -> Any:
        shape = shape_of(leaf)
        for frame, indices in plates:
            axis = frame.dim - event_dim
            if len(shape) < -axis or shape[axis] == 1:
                continue
            if shape[axis] != frame.size:
                raise ShapeError(
                    f"{where}: value of shape {shape} has size {shape[axis]} "
                    f"at dim {axis} (plate dim {frame.dim} left of event_dim="
                    f"{event_dim}), but plate {frame.name!r} has size {frame.size}. "
                    f"Give it the plate's full size {frame.size} there (it is "
                    "subsampled with the plate), or 1 to share it."
                )
            if frame.subsample_size != frame.size:
                leaf = jnp.take(leaf, indices, axis=axis)
        return leaf

    return jax.tree.map(index, value)
