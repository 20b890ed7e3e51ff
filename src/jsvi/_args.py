"""Splitting model arguments into traced arrays and static Python values.

Every compiled entry point (``svi_init``, ``svi_update``, ``evaluate_loss``,
``svi_run``, ``validate``, ``Predictive``, diagnostics) takes the model's
``*args, **kwargs`` the same way: array leaves (JAX and NumPy arrays, NumPy
scalars, Python floats and complex numbers, tracers) are traced; every other leaf
(ints, bools, strings, ...) is static, so ``plate("data", n)`` with an int ``n``
works. The static part, ``ArgSpec``, is hashable: it is the key under which
``jax.jit`` caches one compiled program per argument structure.

May import: ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from jsvi._typing import is_concrete
from jsvi.errors import ArgumentError

__all__ = ["ArgSpec", "merge_args", "split_args"]

_DYNAMIC_TYPES = (jax.Array, np.ndarray, np.generic, float, complex)


class ArgSpec(NamedTuple):
    """The static structure of a call's arguments (hashable).

    Attributes:
        treedef: the tree structure of ``(args, kwargs)``.
        static: ``(position, type, value)`` of each static leaf. The type is part
            of the key, so equal values of different types (``1``, ``1.0``,
            ``True``) give different programs.
        num_leaves: the number of leaves, static and traced.
    """

    treedef: Any
    static: tuple[tuple[int, type, Hashable], ...]
    num_leaves: int


def is_traced_leaf(x: Any) -> bool:
    """True for leaves that are passed to compiled code as arrays."""
    return isinstance(x, _DYNAMIC_TYPES) or not is_concrete(x)


def split_args(
    args: tuple, kwargs: Mapping[str, Any], where: str
) -> tuple[list[Any], ArgSpec]:
    """``(traced leaves, static structure)`` of a call's arguments.

    Args:
        args, kwargs: the model's arguments.
        where: the caller's name, for error messages.

    Raises:
        ArgumentError: a static leaf is not hashable (e.g. a list of strings
            holding an unhashable object).
    """
    leaves, treedef = jax.tree.flatten((tuple(args), dict(kwargs)))
    dynamic: list[Any] = []
    static: list[tuple[int, type, Hashable]] = []
    for i, leaf in enumerate(leaves):
        if is_traced_leaf(leaf):
            dynamic.append(leaf)
            continue
        try:
            hash(leaf)
        except TypeError:
            raise ArgumentError(
                f"{where}: model argument leaf #{i} of type {type(leaf).__name__} is "
                "neither an array nor hashable. Pass data as arrays "
                "(jnp.asarray(...)); other arguments must be hashable Python values."
            ) from None
        static.append((i, type(leaf), leaf))
    return dynamic, ArgSpec(treedef, tuple(static), len(leaves))


def merge_args(spec: ArgSpec, dynamic: list[Any] | tuple[Any, ...]) -> tuple[tuple, dict]:
    """The ``(args, kwargs)`` that ``split_args`` took apart."""
    leaves: list[Any] = [None] * spec.num_leaves
    for i, _, value in spec.static:
        leaves[i] = value
    traced = iter(dynamic)
    for i in range(spec.num_leaves):
        if leaves[i] is None:
            leaves[i] = next(traced)
    args, kwargs = jax.tree.unflatten(spec.treedef, leaves)
    return args, kwargs
