"""Enumerated chains in ``jsvi.scan``: the layout of their enumeration dims,
the reducer protocol, and the loop that hands each step's sites to the reducer.

May import: ``jsvi.core.*``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from jsvi._typing import Array, PyTree
from jsvi.core._scan_steps import (
    SCAN_DECIDED_KEY,
    SCAN_LENGTH_KEY,
    SCAN_SUMMED_KEY,
    _check_same_sites,
    _concat,
    _Context,
    _kinds,
    _payload,
    _Record,
    _record_stacked,
    _run_step,
    _sites,
    _stackable,
)
from jsvi.core.enumeration import ENUM_DIM_KEY
from jsvi.core.primitives import FactorDensity
from jsvi.core.runtime import Message, apply_stack
from jsvi.core.trace import Site
from jsvi.errors import ArgumentError, ShapeError, SiteError

__all__ = ["ChainLayout", "ChainReducer"]


class ChainLayout(NamedTuple):
    """Where an enumerated ``scan`` puts the enumerated sites of its steps.

    Attributes:
        prev_dims: dims of the enumerated sites of the step before (and of the
            first step's own sites), one per enumerated site of a step.
        new_dims: dims of the enumerated sites of the step being run.
        names: the enumerated sites of a step, in order.
        max_plate_nesting: plates use dims ``-1 .. -max_plate_nesting``.
        outer_plates: names of the vectorized plates around the ``scan`` call.
    """

    prev_dims: tuple[int, ...]
    new_dims: tuple[int, ...]
    names: tuple[str, ...]
    max_plate_nesting: int
    outer_plates: frozenset


class ChainReducer(Protocol):
    """Sums the enumerated sites of a chain out, one step at a time.

    ``start`` gets the first step's sample sites (enumerated ones at
    ``prev_dims``) and returns a state (a pytree of arrays of fixed shapes);
    ``step`` gets the state and one later step's sites (enumerated ones at
    ``new_dims``, the step before's at ``prev_dims``) and returns the next
    state; ``finish`` returns the log-density with every enumerated site of the
    chain summed out, positional over the plates around the call (and any
    enumeration dims from outside the chain that it depends on).
    """

    def start(self, sites: Sequence[Site]) -> PyTree: ...

    def step(self, state: PyTree, sites: Sequence[Site]) -> PyTree: ...

    def finish(self, state: PyTree) -> Array: ...


# A reducer whose ``has_step_outputs`` is true (read after ``start``) returns
# ``(state, output)`` from ``step``; its ``decide(state, outputs)``, given the
# outputs stacked over steps ``1 .. T-1``, returns the enumerated sites' values
# (name -> array with a leading time axis), recorded as ``SCAN_DECIDED_KEY`` sites.


def _shift(leaf: Any, like: Any, prev: tuple, new: tuple) -> Array:
    """A carry (or output) leaf of a later step, its enumerated dims moved from
    ``new`` back to ``prev``, shaped like the first step's ``like``."""
    x, like = jnp.asarray(leaf), jnp.asarray(like)
    rank = max(x.ndim, -min(new))
    x = x.reshape((1,) * (rank - x.ndim) + x.shape)
    for a in prev:
        if x.shape[a] != 1:
            raise SiteError(
                f"scan: the carry (or output) of a step has size {x.shape[a]} at "
                f"dim {a}, where the step before's enumerated sites lie: it reaches "
                "back two steps, but history=1. Carry only values of the current "
                "step."
            )
    for a, b in zip(prev, new):
        x = jnp.swapaxes(x, a, b)
    lead = x.ndim - like.ndim
    if lead > 0:
        if any(s != 1 for s in x.shape[:lead]):
            raise ShapeError(
                f"scan: a carry leaf has shape {x.shape} after a step, but "
                f"{like.shape} after the first step. Keep the carry's shape fixed."
            )
        x = x.reshape(x.shape[lead:])
    return jnp.broadcast_to(x, like.shape).astype(like.dtype)


def _enumerated(
    f: Callable,
    ctx: _Context,
    carry0: PyTree,
    y0: PyTree,
    records0: list[_Record],
    rest: PyTree,
    names: tuple[str, ...],
    first_dim: int,
    outer: frozenset,
    history: int,
) -> tuple[PyTree, PyTree]:
    """The scan with enumerated sites summed out by the enum handler's reducer."""
    outer_enum = ctx.outer_enum
    assert outer_enum is not None
    if outer_enum.chain_reducer is None:
        raise SiteError(
            f"sample site {names[0]!r}: marked for enumeration inside jsvi.scan, "
            "which only TraceEnum_ELBO (and infer_discrete) sum out; "
            "log_likelihood does not yet. Use TraceEnum_ELBO, or sample the site "
            "in the guide."
        )
    if history > 1:
        raise ArgumentError(
            f"scan: history={history} with enumerated sites ({list(names)}) is not "
            "supported; jsvi.scan sums out first-order chains (history=1). Carry the "
            "last two states as one enumerated site (K*K values), or use "
            "jsvi.markov(range(T), history=2)."
        )
    m = len(names)
    prev = tuple(first_dim - i for i in range(m))
    new = tuple(first_dim - m - i for i in range(m))
    layout = ChainLayout(prev, new, names, outer_enum.max_plate_nesting, outer)
    reducer = outer_enum.chain_reducer(layout)
    state0 = reducer.start(_sites(records0))
    outputs = bool(getattr(reducer, "has_step_outputs", False))
    meta: list[list[tuple[str, str]]] = []

    def body(carry: tuple, inp: tuple) -> tuple:
        user, state = carry
        t, x = inp
        local = outer_enum.scan_child(first_dim - m)
        user_new, y, records = _run_step(f, user, x, t, ctx, local)
        meta.append(_kinds(records))
        got = tuple(r.msg.name for r in records if ENUM_DIM_KEY in r.msg.infer)
        if got != names:
            raise SiteError(
                f"scan: the first step enumerated {list(names)}, a later step "
                f"{list(got)}. Every step must enumerate the same sites."
            )
        state = reducer.step(state, _sites(records))
        out = None
        if outputs:
            state, out = state
        user_new = jax.tree.map(lambda a, b: _shift(a, b, prev, new), user_new, carry0)
        y = jax.tree.map(lambda a, b: _shift(a, b, prev, new), y, y0)
        payload = [_payload(r, False) for r in records if _stackable(r)]
        payload = jax.tree.map(lambda a, b: _shift(a, b, prev, new), payload, payload0)
        return (user_new, state), (y, payload, out)

    payload0 = [_payload(r, False) for r in records0 if _stackable(r)]
    n = ctx.length
    if n == 1:
        carry, state, outs = carry0, state0, None
        ys, stacked = _concat(y0, None), _concat(payload0, None)
    else:
        (carry, state), (ys_rest, rest_payload, outs) = jax.lax.scan(
            body, (carry0, state0), (jnp.arange(1, n), rest)
        )
        _check_same_sites(records0, meta[0])
        ys, stacked = _concat(y0, ys_rest), _concat(payload0, rest_payload)
    log_factor = reducer.finish(state)
    apply_stack(
        Message(
            kind="sample",
            name=f"_jsvi/scan/{names[0]}",
            fn=FactorDensity(log_factor),
            value=jnp.zeros(jnp.shape(log_factor)),
            is_observed=True,
        )
    )
    _record_stacked(records0, stacked, n, summed=True)
    if outputs:
        _record_decided(records0, reducer.decide(state, outs), n)
    return carry, ys


def _record_decided(records: list[_Record], values: dict, length: int) -> None:
    for record in records:
        msg = record.msg
        if msg.name not in values:
            continue
        infer = {k: v for k, v in msg.infer.items() if k != ENUM_DIM_KEY}
        infer.update({SCAN_LENGTH_KEY: length, SCAN_DECIDED_KEY: True})
        infer[SCAN_SUMMED_KEY] = True
        out = Message(
            kind="sample",
            name=msg.name,
            fn=msg.fn,
            value=values[msg.name],
            infer=infer,
            cond_indep_stack=msg.cond_indep_stack,
        )
        for h in record.applied:
            h.postprocess(out)


