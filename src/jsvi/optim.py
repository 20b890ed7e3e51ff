"""Optimizer helpers on top of optax.

May import: ``jsvi._typing``, ``jsvi.errors``; external: ``optax``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import optax

from jsvi._typing import Params
from jsvi.errors import ArgumentError

__all__ = ["per_param"]


class PerParamState(NamedTuple):
    """One inner optimizer state per parameter name."""

    inner: dict[str, Any]


def per_param(
    fn: Callable[[str], optax.GradientTransformation],
) -> optax.GradientTransformation:
    """Build an optax transform that gives each parameter its own optimizer.

    Args:
        fn: ``param_name -> optax.GradientTransformation``. Called once per name
            at ``init`` and again (it must return an equivalent transform) at
            ``update``; a pure function of the name.

    Returns:
        An ``optax.GradientTransformation`` over a dict ``name -> value`` (the
        layout of ``SVIState.params``).

    Example:
        >>> import optax, jsvi
        >>> opt = jsvi.per_param(
        ...     lambda name: optax.adam(1e-1 if name.startswith("baseline") else 1e-3))
        >>> state = opt.init({"w": 0.0, "baseline_w": 0.0})
        >>> sorted(state.inner)
        ['baseline_w', 'w']
    """
    if not callable(fn):
        raise ArgumentError(
            f"per_param: fn must be a callable name -> optax transform, got {fn!r}."
        )

    def transform(name: str) -> optax.GradientTransformation:
        tx = fn(name)
        if not (hasattr(tx, "init") and hasattr(tx, "update")):
            raise ArgumentError(
                f"per_param: fn({name!r}) returned {type(tx).__name__}, not an optax "
                "GradientTransformation. Return e.g. optax.adam(1e-3)."
            )
        return tx

    def _as_dict(params: Any) -> Params:
        if not isinstance(params, dict):
            raise ArgumentError(
                "per_param: expects a dict name -> parameter (as in SVIState.params), "
                f"got {type(params).__name__}."
            )
        return params

    def init(params: Params) -> PerParamState:
        params = _as_dict(params)
        return PerParamState({n: transform(n).init(v) for n, v in params.items()})

    def update(
        updates: Params, state: PerParamState, params: Params | None = None
    ) -> tuple[Params, PerParamState]:
        updates = _as_dict(updates)
        new_updates, new_inner = {}, {}
        for name, grad in updates.items():
            inner_params = None if params is None else params[name]
            new_updates[name], new_inner[name] = transform(name).update(
                grad, state.inner[name], inner_params
            )
        return new_updates, PerParamState(new_inner)

    return optax.GradientTransformation(init, update)
