"""The pure functions behind the SVI loop: initialise a state, take one step, take
a run of steps. ``jsvi.svi`` and ``jsvi.loop`` compile them.

Each takes the static configuration (``SVI``: model, guide, optimizer, loss,
validate) as its first argument and everything that changes as pytrees: the
state, and the model arguments split by ``jsvi._args`` into traced arrays and a
static ``ArgSpec``. ``Compiled`` holds one ``jax.jit`` of each per configuration;
it belongs to that configuration and is dropped with it.

May import: ``jsvi.boundary``, ``jsvi.infer``, ``jsvi.state``, ``jsvi._args``,
``jsvi._typing``, ``jsvi.errors``; external: ``optax``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jsvi import errors
from jsvi._args import ArgSpec, merge_args
from jsvi._typing import Array, Params, PRNGKey, all_true, is_concrete
from jsvi.boundary import check_call
from jsvi.infer import (
    check_traces,
    get_traces,
    init_values,
    unconstrain,
    unconstrained_param_fn,
    value_checks,
)
from jsvi.state import ParamConstraints, SVIState

__all__ = [
    "Compiled",
    "apply_update",
    "compile_steps",
    "init_state",
    "nonfinite_params",
    "nonfinite_report",
    "objective",
    "raise_failed_checks",
    "run_steps",
    "state_finite",
    "step",
    "step_key",
    "try_update",
    "update",
]



# Tags for the keys of init (uint32 values no int32 step count reaches; the
# model's stream within a step is folded in with 2**31 - 1).
_INIT_KEY_TAG = 2**32 - 2
_ESTIMATOR_KEY_TAG = 2**32 - 3


def init_state(svi: Any, rng_key: PRNGKey, dynamic: list, spec: ArgSpec):
    """``(initial state, value-check flags)``; structural checks raise here.

    Guide and model run once at a feasible point (nothing is drawn): each
    ``param`` site's init value is mapped to unconstrained space. The flags are
    keyed ``"index|error class|message"`` and all True when every value check
    passed (see ``raise_failed_checks``).
    """
    args, kwargs = merge_args(spec, dynamic)
    # The state keeps ``rng_key``; steps draw with ``fold_in(rng_key, step)``.
    # Init's own keys are folded in with tags no step count reaches, and are
    # computed only if something at init draws (a callable param init, an
    # estimator state): otherwise jit drops them, and the init program holds no
    # random-number code at all.
    init_key = jax.random.fold_in(rng_key, _INIT_KEY_TAG)
    state_key = jax.random.fold_in(rng_key, _ESTIMATOR_KEY_TAG)
    model_tr, guide_tr = get_traces(
        init_key, svi.model, svi.guide, init_values, args, kwargs, draw=False
    )
    params: dict[str, Any] = {}
    constraints: dict[str, Any] = {}
    for tr in (guide_tr, model_tr):
        for name, site in tr.param_sites().items():
            if name not in params:
                params[name] = unconstrain(site.value, site.constraint)
                constraints[name] = site.constraint
    checks = []
    if svi.validate:
        check_traces(model_tr, guide_tr)
        svi.loss.check_traces(model_tr, guide_tr)
        checks = value_checks(model_tr, guide_tr)
    # jit returns dicts with sorted keys: number them to keep the order of checks.
    flags = {
        f"{i:06d}|{cls.__name__}|{message}": ok
        for i, (cls, message, ok) in enumerate(checks)
    }
    param_fn = unconstrained_param_fn(params)
    elbo_state = svi.loss.init_state(state_key, param_fn, svi.model, svi.guide, args, kwargs)
    if svi.validate:
        # Trace (never compile) one loss evaluation, so that the estimator's own
        # structural errors surface here rather than in the first svi_update.
        jax.eval_shape(
            lambda: svi.loss.loss_and_aux(
                rng_key, param_fn, svi.model, svi.guide, elbo_state, args, kwargs
            )
        )
    state = SVIState(
        params=params,
        opt_state=svi.optimizer.init(params),
        elbo_state=elbo_state,
        rng_key=rng_key,
        step=jnp.zeros((), jnp.int32),
        num_rejected=jnp.zeros((), jnp.int32),
        param_constraints=ParamConstraints(constraints),
    )
    return state, flags


def raise_failed_checks(flags: Mapping[str, Array], where: str) -> None:
    """Raise the first failed value check (keys: ``index|error class|message``)."""
    if not all(is_concrete(v) for v in flags.values()):
        return  # traced (e.g. svi_init under vmap): value checks need concrete values
    for key in sorted(flags):
        if not bool(flags[key]):
            _, cls_name, message = key.split("|", 2)
            raise getattr(errors, cls_name)(f"{where}: {message}.")


def step_key(state: SVIState) -> PRNGKey:
    """The key one step draws with: ``fold_in(rng_key, step)``, with
    ``num_rejected`` mixed into its last word.

    After a rejected (non-finite) step the state is unchanged but for
    ``num_rejected``, so the retry draws anew; the XOR is the identity while
    nothing was rejected, and distinct ``(step, num_rejected)`` give distinct keys.
    """
    key = jax.random.fold_in(state.rng_key, state.step)
    data = jax.random.key_data(key)
    last = jnp.arange(data.shape[-1], dtype=data.dtype) == data.shape[-1] - 1
    data = data ^ (last * jnp.asarray(state.num_rejected).astype(data.dtype))
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))


def objective(svi: Any, state: SVIState, args: tuple, kwargs: dict):
    """``params_u -> (surrogate loss, (loss, new elbo_state))`` at ``state``'s draw."""
    key = step_key(state)

    def fn(params_u: Params):
        return svi.loss.loss_and_aux(
            key,
            unconstrained_param_fn(params_u),
            svi.model,
            svi.guide,
            state.elbo_state,
            args,
            kwargs,
        )

    return fn


def _all_true(flags: Mapping[str, Array]) -> Array | None:
    ok = None
    for flag in flags.values():
        ok = flag if ok is None else ok & flag
    return ok


def state_finite(state: SVIState) -> Array:
    """True when every float value of the params, optimizer state and estimator
    state is finite (one traced scalar)."""
    ok = jnp.ones((), bool)
    for leaf in jax.tree.leaves((state.params, state.opt_state, state.elbo_state)):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            ok = ok & all_true(jnp.isfinite(leaf))
    return ok


def apply_update(
    svi: Any, state: SVIState, grads: Params, loss: Array, elbo_state: Any
) -> SVIState:
    """The state after the optimizer's update with ``grads`` (``step`` + 1)."""
    if isinstance(svi.optimizer, optax.GradientTransformationExtraArgs):
        updates, opt_state = svi.optimizer.update(
            grads, state.opt_state, state.params, value=loss
        )
    else:
        updates, opt_state = svi.optimizer.update(grads, state.opt_state, state.params)
    return state._replace(
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        elbo_state=elbo_state,
        step=state.step + 1,
    )


def step(
    svi: Any,
    state: SVIState,
    args: tuple,
    kwargs: dict,
    skip_nonfinite: bool,
    data_ok: Array | None = None,
) -> tuple[SVIState, Array, Array]:
    """One optimizer step: ``(new state, loss, rejected)``.

    A rejected step keeps the state but for ``num_rejected``, which grows by one.
    A step is rejected when ``data_ok`` is False (observed values outside their
    support: nothing is computed, its loss is reported as NaN), and, with
    ``skip_nonfinite``, when its loss is not finite or the state it would leave
    (params, optimizer state, estimator state) is not finite; its loss is then
    reported as it was. Non-finite gradients are caught by the second test with
    any usual optimizer (they make its update non-finite); one that absorbs them
    (e.g. ``optax.zero_nans``) leaves a finite state, and the step is kept.

    Each check is one ``lax.cond``: the data check around the whole step (it does
    not depend on the step), the finiteness check choosing between the new state
    and the old one.
    """

    def rejected() -> SVIState:
        return state._replace(num_rejected=state.num_rejected + 1)

    def attempt() -> tuple[SVIState, Array, Array]:
        (_, (loss, elbo_state)), grads = jax.value_and_grad(
            objective(svi, state, args, kwargs), has_aux=True
        )(state.params)
        new = apply_update(svi, state, grads, loss, elbo_state)
        if not skip_nonfinite:
            return new, loss, jnp.zeros((), bool)
        accept = jnp.isfinite(loss) & state_finite(new)
        return jax.lax.cond(accept, lambda: new, rejected), loss, ~accept

    if data_ok is None:
        return attempt()
    loss_like = jax.eval_shape(attempt)[1]

    def refused() -> tuple[SVIState, Array, Array]:
        nan = jnp.full(loss_like.shape, jnp.nan, loss_like.dtype)
        return rejected(), nan, jnp.ones((), bool)

    return jax.lax.cond(data_ok, attempt, refused)


def update(
    svi: Any, state: SVIState, dynamic: list, spec: ArgSpec
) -> tuple[SVIState, Array]:
    """``svi_update``'s step on split arguments: ``(new state, loss)``.

    The state and arguments are checked against ``svi`` while this is traced
    (``jsvi.boundary.check_call``); a step on observed values outside their
    support is rejected, with a NaN loss.
    """
    args, kwargs = merge_args(spec, dynamic)
    data_ok = _all_true(check_call(svi, state, args, kwargs, "svi_update"))
    new_state, loss, _ = step(svi, state, args, kwargs, False, data_ok)
    return new_state, loss


def try_update(
    svi: Any, state: SVIState, dynamic: list, spec: ArgSpec, skip_nonfinite: bool
) -> tuple[SVIState, Array, Array, dict[str, Array]]:
    """One step of ``svi_run`` on streamed arguments: ``(new state, loss,
    rejected, observed-value flags by site)``."""
    args, kwargs = merge_args(spec, dynamic)
    flags = check_call(svi, state, args, kwargs, "svi_run")
    new_state, loss, rejected = step(
        svi, state, args, kwargs, skip_nonfinite, _all_true(flags)
    )
    return new_state, loss, rejected, flags


def evaluate(svi: Any, state: SVIState, dynamic: list, spec: ArgSpec) -> Array:
    """The loss the next step at ``state`` would report."""
    args, kwargs = merge_args(spec, dynamic)
    data_ok = _all_true(check_call(svi, state, args, kwargs, "evaluate_loss"))
    _, (loss, _) = objective(svi, state, args, kwargs)(state.params)
    return loss if data_ok is None else jnp.where(data_ok, loss, jnp.nan)


def run_steps(
    svi: Any,
    state: SVIState,
    dynamic: list,
    losses: Array,
    rejected: Array,
    start: Array,
    stop: Array,
    spec: ArgSpec,
    skip_nonfinite: bool,
) -> tuple[SVIState, Array, Array, dict[str, Array], Array]:
    """Steps ``start .. stop-1`` of a run, writing into ``losses``/``rejected``:
    ``(state, losses, rejected, observed-value flags by site, clean)``.

    The flags check the data once (they are the same for every step). ``clean``
    is True when the losses of these steps and the final state are all finite:
    ``jsvi.loop`` runs steps without ``skip_nonfinite`` and looks for a rejected
    step only when a run of them was not clean.

    The bounds are traced, so one compiled program serves every chunk of a run
    and every run of the same length (a ``lax.fori_loop`` with traced bounds).
    """
    args, kwargs = merge_args(spec, dynamic)
    flags = check_call(svi, state, args, kwargs, "svi_run")
    data_ok = _all_true(flags)
    inside = (jnp.arange(losses.shape[0]) >= start) & (jnp.arange(losses.shape[0]) < stop)

    def body(i, carry):
        st, losses, rejected = carry
        st, loss, rej = step(svi, st, args, kwargs, skip_nonfinite)
        losses = losses.at[i].set(loss)
        return st, losses, rejected.at[i].set(rej) if skip_nonfinite else rejected

    def run(carry):
        return jax.lax.fori_loop(start, stop, body, carry)

    def reject_all(carry):
        # The data are the same for every step: invalid data reject them all.
        st, losses, rejected = carry
        st = st._replace(num_rejected=st.num_rejected + (stop - start).astype(jnp.int32))
        return st, jnp.where(inside, jnp.nan, losses), rejected | inside

    carry = (state, losses, rejected)
    if data_ok is None:
        state, losses, rejected = run(carry)
    else:
        state, losses, rejected = jax.lax.cond(data_ok, run, reject_all, carry)
    clean = all_true(jnp.where(inside, jnp.isfinite(losses), True)) & state_finite(state)
    return state, losses, rejected, flags, clean


class Compiled(NamedTuple):
    """One ``jax.jit`` of each entry point, bound to one configuration.

    ``jax.jit``'s own cache, one compiled program per argument structure
    (``ArgSpec``) and shapes, is the only cache. It lives and dies with the
    configuration object: nothing outside it keeps the model alive.
    """

    init: Any  # (rng_key, dynamic, spec) -> (state, flags)
    update: Any  # (state, dynamic, spec) -> (state, loss)
    try_update: Any  # (state, dynamic, spec, skip) -> (state, loss, rejected, flags)
    evaluate: Any  # (state, dynamic, spec) -> loss
    run_steps: Any  # (state, dynamic, losses, rejected, start, stop, spec, skip) -> 5-tuple


def compile_steps(svi: Any) -> Compiled:
    """``Compiled`` entry points for the configuration ``svi``."""
    bind = functools.partial
    return Compiled(
        init=jax.jit(bind(init_state, svi), static_argnums=(2,)),
        update=jax.jit(bind(update, svi), static_argnums=(2,)),
        try_update=jax.jit(bind(try_update, svi), static_argnums=(2, 3)),
        evaluate=jax.jit(bind(evaluate, svi), static_argnums=(2,)),
        run_steps=jax.jit(bind(run_steps, svi), static_argnums=(6, 7)),
    )


def nonfinite_params(state: SVIState) -> list[str]:
    """Names of the params with a non-finite unconstrained value."""
    return [
        name
        for name, value in state.params.items()
        if not all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(value))
    ]


def nonfinite_report(svi: Any, state: SVIState, args: tuple, kwargs: dict) -> str:
    """Name the params, sites, gradients and updates that are not finite at
    ``state`` (for the draw of its next step)."""

    def finite_flags(params: Params):
        st = state._replace(params=params)
        model_tr, guide_tr = get_traces(
            step_key(st), svi.model, svi.guide, unconstrained_param_fn(params), args, kwargs
        )
        sites = {
            f"{label} site {name!r}": jnp.all(jnp.isfinite(lp))
            for label, tr in (("model", model_tr), ("guide", guide_tr))
            for name, lp in tr.log_probs().items()
        }
        (_, (loss, elbo_state)), grads = jax.value_and_grad(
            objective(svi, st, args, kwargs), has_aux=True
        )(params)
        new = apply_update(svi, st, grads, loss, elbo_state)

        def per_param(tree: Params) -> dict[str, Array]:
            return {
                name: jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(v)]))
                for name, v in tree.items()
                if jax.tree.leaves(v)
            }

        return sites, per_param(grads), per_param(new.params)

    try:
        # traced, so that distribution validation does not stop at the first
        # non-finite argument
        sites, grads, updated = jax.jit(finite_flags)(state.params)
        bad_sites = [where for where, ok in sites.items() if not bool(ok)]
        bad_grads = [name for name, ok in grads.items() if not bool(ok)]
        bad_updates = [name for name, ok in updated.items() if not bool(ok)]
    except Exception as e:  # the report must not hide the original problem
        bad_sites = [f"(could not re-run the model: {type(e).__name__}: {e})"]
        bad_grads, bad_updates = [], []
    return (
        f"Non-finite parameter values: {', '.join(nonfinite_params(state)) or 'none'}; "
        f"non-finite log-densities at: {', '.join(bad_sites) or 'none'}; non-finite "
        f"gradients for params: {', '.join(bad_grads) or 'none'}; params the "
        f"optimizer's update makes non-finite: {', '.join(bad_updates) or 'none'}."
    )
