"""Checks at the boundary of every compiled step: what the caller hands over after
``svi_init`` (a state, new arguments) is checked against this ``SVI``.

``check_call`` runs while a step is traced, that is once per argument structure
and shapes, never per step. It runs the guide and the model at a feasible point
(nothing is drawn) and:

- refuses a state whose params (names, shapes, dtypes, constraints) or optimizer
  state are not this ``SVI``'s, naming them;
- re-runs the structural checks of ``svi_init`` on the new argument shapes
  (plates, observation shapes, model/guide agreement), so data of another size
  cannot leave data-sized params at their old shapes;
- returns, per observed site, a boolean scalar that is True when the observed
  values lie in the site's support. The compiled step rejects a step whose data
  fail it (``jsvi.step``).

May import: ``jsvi.infer``, ``jsvi.state``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, all_true
from jsvi.errors import ArgumentError, ShapeError, StateError
from jsvi.infer import check_traces, get_traces, init_values, is_internal, unconstrain
from jsvi.state import ParamConstraints, SVIState

__all__ = ["check_call", "check_state_type"]



def check_state_type(state: Any, where: str) -> None:
    """Refuse what is not an ``SVIState`` (a params dict, a tuple, ...)."""
    if isinstance(state, SVIState):
        return
    hint = (
        " It looks like a params dict: pass the SVIState that svi_init returned, and "
        "get_params(svi, state) for the constrained values."
        if isinstance(state, dict)
        else ""
    )
    raise ArgumentError(
        f"{where}: state must be the SVIState that svi_init returned, got "
        f"{type(state).__name__}.{hint}"
    )


def _check_key(key: Any, where: str) -> None:
    shape, dtype = tuple(np.shape(key)), getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
        return
    raw = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape
    if dtype == jnp.uint32 and shape == tuple(raw):
        return
    raise StateError(
        f"{where}: the state's rng_key has shape {shape} and dtype {dtype}; expected "
        "one typed key (jax.random.key) or one raw uint32 key. The state's key was "
        "replaced by something else; keep the key svi_init put there."
    )


def _leaf_specs(tree: Any) -> list[tuple[tuple[int, ...], str]]:
    return [(tuple(np.shape(x)), str(jnp.result_type(x))) for x in jax.tree.leaves(tree)]


def _check_params(svi: Any, state: SVIState, traces: tuple, where: str) -> None:
    expected: dict[str, Any] = {}
    constraints: dict[str, Any] = {}
    for tr in traces:
        for name, site in tr.param_sites().items():
            if name not in expected:
                expected[name] = unconstrain(site.value, site.constraint)
                constraints[name] = site.constraint
    held = state.params
    if not isinstance(held, dict) or set(held) != set(expected):
        got = sorted(held) if isinstance(held, dict) else type(held).__name__
        missing = sorted(set(expected) - set(held)) if isinstance(held, dict) else []
        extra = sorted(set(held) - set(expected)) if isinstance(held, dict) else []
        raise StateError(
            f"{where}: the state's params {got} are not this SVI's (missing: {missing}, "
            f"not declared by model or guide: {extra}). The state was made by another "
            "SVI; start from svi_init(svi, ...) of this one, or load a checkpoint "
            "written for it."
        )
    for name, value in expected.items():
        if jax.tree.structure(held[name]) != jax.tree.structure(value):
            raise StateError(
                f"{where}: param {name!r} has the tree structure "
                f"{jax.tree.structure(held[name])} in the state, but "
                f"{jax.tree.structure(value)} in this SVI's model or guide."
            )
        got, want = _leaf_specs(held[name]), _leaf_specs(value)
        if got != want:
            raise ShapeError(
                f"{where}: param {name!r} has shape/dtype {got} in the state, but "
                f"{want} at these arguments. Params whose shape follows the data are "
                "tied to the data's shape: call svi_init with data of the new shape (or "
                "pad the batch to the old one)."
            )
    mine = ParamConstraints(constraints)
    theirs = state.param_constraints
    if not isinstance(theirs, ParamConstraints):
        raise StateError(f"{where}: the state's param_constraints is not a ParamConstraints.")
    skeleton_mine = dict(mine.tree_flatten()[1])
    skeleton_theirs = dict(theirs.tree_flatten()[1])
    for name in expected:
        if skeleton_mine.get(name) != skeleton_theirs.get(name):
            raise StateError(
                f"{where}: param {name!r} has constraint "
                f"{theirs.as_dict().get(name)!r} in the state, but "
                f"{constraints[name]!r} in this SVI's model or guide. Its unconstrained "
                "value would be read through the wrong transform; start from svi_init "
                "of this SVI."
            )


def _check_opt_state(svi: Any, state: SVIState, where: str) -> None:
    expected = jax.eval_shape(svi.optimizer.init, state.params)
    if jax.tree.structure(expected) != jax.tree.structure(state.opt_state):
        raise StateError(
            f"{where}: the state's opt_state does not match this SVI's optimizer "
            f"(structure {jax.tree.structure(state.opt_state)}, expected "
            f"{jax.tree.structure(expected)}). The state was made with another "
            "optimizer; start from svi_init of this SVI, or rebuild opt_state with "
            "state._replace(opt_state=svi.optimizer.init(state.params))."
        )


def observed_flags(model_tr: Any) -> dict[str, Array]:
    """Per observed site: True when its values lie in the site's support (masked
    elements excepted). Only sites whose distribution validates are checked."""
    flags: dict[str, Array] = {}
    for name, site in model_tr.sample_sites().items():
        if not site.is_observed or is_internal(name):
            continue
        fn = site.fn
        check = getattr(fn, "validation_flags", None)
        if check is None or not getattr(fn, "_validate_args", False):
            continue
        ok = check(site.value).get("value")
        if ok is None:
            continue
        if site.mask is not None:
            ok = ok | ~jnp.asarray(site.mask, bool)
        flags[name] = all_true(ok)
    return flags


def check_call(
    svi: Any, state: SVIState, args: tuple, kwargs: dict, where: str
) -> dict[str, Array]:
    """Trace-time checks of a step's state and arguments; the observed-value flags.

    Raises:
        StateError: the state's params, constraints or optimizer state are not
            this SVI's.
        ShapeError: a param's shape at these arguments differs from the state's,
            or the arguments break a plate or observation shape rule.
        ModelGuideMismatchError, SiteError, ...: the structural checks of
            ``svi_init``, on these arguments.
    """
    check_state_type(state, where)
    _check_key(state.rng_key, where)
    model_tr, guide_tr = get_traces(
        state.rng_key, svi.model, svi.guide, init_values, args, kwargs, draw=False
    )
    _check_params(svi, state, (guide_tr, model_tr), where)
    _check_opt_state(svi, state, where)
    if not svi.validate:
        return {}
    check_traces(model_tr, guide_tr)
    svi.loss.check_traces(model_tr, guide_tr)
    return observed_flags(model_tr)
