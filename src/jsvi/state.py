"""``SVIState``, the pytree that holds everything that changes from one SVI step to
the next, and ``ParamConstraints``, its record of each parameter's constraint.

A state is a plain pytree of arrays: ``jax.jit``, ``vmap``, ``lax.scan``,
donation, ``pickle``, ``copy.deepcopy`` and ``multiprocessing`` treat it like any
other. Nothing in it is shared with another state or recognised by identity.

May import: ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from jsvi._typing import Array, Params, PRNGKey, PyTree, is_concrete

__all__ = ["ParamConstraints", "SVIState"]


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray) or not is_concrete(x)


def _split(value: Any, leaves: list[Any]) -> Any:
    """The static skeleton of a constraint; its array-valued fields go to ``leaves``.

    A constraint is a frozen dataclass whose fields are Python numbers, arrays
    (bounds that vary per element) or other constraints. Arrays become pytree
    leaves, so a bound may be any array (or a tracer); the rest stays static.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = tuple(
            (f.name, _split(getattr(value, f.name), leaves))
            for f in dataclasses.fields(value)
        )
        return ("node", type(value), fields)
    if _is_array(value):
        leaves.append(value)
        return ("leaf",)
    return ("value", value)


def _join(skeleton: Any, leaves: Iterable[Any]) -> Any:
    """Rebuild what ``_split`` took apart (leaves in the same order)."""
    kind = skeleton[0]
    if kind == "leaf":
        return next(leaves)  # type: ignore[call-overload]
    if kind == "value":
        return skeleton[1]
    _, cls, fields = skeleton
    obj = object.__new__(cls)
    for name, sub in fields:
        # Frozen dataclasses are rebuilt field by field, as unflattening does:
        # their __init__ validates user input, which these values already passed.
        object.__setattr__(obj, name, _join(sub, leaves))
    return obj


@jax.tree_util.register_pytree_node_class
class ParamConstraints:
    """Each parameter's constraint, by name, as part of an ``SVIState``.

    A pytree node: constraint types and Python-number bounds are its static
    structure, array-valued bounds (``constraints.interval(lo_array, hi_array)``)
    are leaves. So states with equal constraints have equal tree structures,
    array bounds need not be hashable, and the record pickles with the state.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()):
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items = tuple((str(name), c) for name, c in pairs)

    def as_dict(self) -> dict[str, Any]:
        """``{param name: constraint}``."""
        return dict(self._items)

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._items)

    def tree_flatten(self) -> tuple[list[Any], tuple]:
        leaves: list[Any] = []
        skeleton = tuple((name, _split(c, leaves)) for name, c in self._items)
        return leaves, skeleton

    @classmethod
    def tree_unflatten(cls, skeleton: tuple, leaves: Iterable[Any]) -> ParamConstraints:
        it = iter(leaves)
        return cls(tuple((name, _join(sub, it)) for name, sub in skeleton))

    def __getstate__(self) -> tuple:
        return self._items

    def __setstate__(self, items: tuple) -> None:
        self._items = items

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParamConstraints):
            return NotImplemented
        mine, my_skeleton = self.tree_flatten()
        theirs, their_skeleton = other.tree_flatten()
        if my_skeleton != their_skeleton:
            return False
        return all(
            is_concrete(a)
            and is_concrete(b)
            and np.shape(a) == np.shape(b)
            and bool(np.array_equal(np.asarray(a), np.asarray(b)))
            for a, b in zip(mine, theirs)
        )

    __hash__ = None  # type: ignore[assignment]  # may hold arrays

    def __repr__(self) -> str:
        return f"ParamConstraints({self.as_dict()!r})"


class SVIState(NamedTuple):
    """Everything that changes from one SVI step to the next (a pytree).

    Attributes:
        params: dict name -> unconstrained parameter value (array or pytree).
        opt_state: the optax optimizer state.
        elbo_state: the estimator's state (baseline averages, ...); ``()`` if none.
        rng_key: the run's key. It stays the same from step to step: each step
            draws with a key derived from ``rng_key``, ``step`` and
            ``num_rejected``, so a state's next draw depends on the state alone
            and a resumed run continues the same stream.
        step: number of accepted steps (int32 scalar).
        num_rejected: number of steps rejected as non-finite by ``svi_run``
            (int32 scalar). ``step + num_rejected`` counts every step tried.
        param_constraints: each parameter's constraint (``ParamConstraints``),
            which ``get_params`` applies and checkpoints record.
    """

    params: Params
    opt_state: PyTree
    elbo_state: PyTree
    rng_key: PRNGKey
    step: Array
    num_rejected: Array
    param_constraints: ParamConstraints = ParamConstraints()
