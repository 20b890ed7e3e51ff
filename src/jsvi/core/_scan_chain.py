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
from jsvi.errors import ShapeError, SiteError

__all__ = ["ChainLayout", "ChainReducer"]


class ChainLayout(NamedTuple):
    """Where an enumerated ``scan`` puts the enumerated sites of its steps.

    With ``history = k`` a step may depend on the sites of the ``k`` steps
    before it, which lie in ``k`` blocks of dims, oldest first:
    ``older_dims + (prev_dims,)``; the step being run takes ``new_dims``. The
    first ``k`` steps are run unrolled, step ``j`` in block ``j``, so that
    after them the blocks hold steps ``0 .. k-1``.

    Attributes:
        prev_dims: dims of the enumerated sites of the step before, one per
            enumerated site of a step.
        new_dims: dims of the enumerated sites of the step being run.
        names: the enumerated sites of a step, in order.
        max_plate_nesting: plates use dims ``-1 .. -max_plate_nesting``.
        outer_plates: names of the vectorized plates around the ``scan`` call.
        older_dims: with ``history = k > 1``, the blocks of the steps ``k ..
            2`` before, oldest first (empty for ``history = 1``).
    """

    prev_dims: tuple[int, ...]
    new_dims: tuple[int, ...]
    names: tuple[str, ...]
    max_plate_nesting: int
    outer_plates: frozenset
    older_dims: tuple[tuple[int, ...], ...] = ()

    @property
    def blocks(self) -> tuple[tuple[int, ...], ...]:
        """The blocks of the steps before the one being run, oldest first."""
        return self.older_dims + (self.prev_dims,)


class ChainReducer(Protocol):
    """Sums the enumerated sites of a chain out, one step at a time.

    ``start`` gets the first step's sample sites (enumerated ones in the first
    block, ``layout.blocks[0]``) and returns a state (a pytree of arrays of
    fixed shapes); with ``history = k > 1``, ``extend`` then gets the state and
    the sites of steps ``1 .. k-1`` (step ``j``'s enumerated sites in block
    ``j``) and sums nothing out; ``step`` gets the state and one later step's
    sites (enumerated ones at ``new_dims``, the ``k`` steps before in the
    blocks) and returns the next state, where the oldest block is summed out
    and block ``b + 1`` (``new_dims`` for the last) has become block ``b``;
    ``finish`` returns the log-density with every enumerated site of the chain
    summed out, positional over the plates around the call (and any
    enumeration dims from outside the chain that it depends on).
    """

    def start(self, sites: Sequence[Site]) -> PyTree: ...

    def extend(self, state: PyTree, sites: Sequence[Site]) -> PyTree: ...

    def step(self, state: PyTree, sites: Sequence[Site]) -> PyTree: ...

    def finish(self, state: PyTree) -> Array: ...


# A reducer whose ``has_step_outputs`` is true (read after ``start``) returns
# ``(state, output)`` from ``step``; its ``decide(state, outputs)``, given the
# outputs stacked over steps ``1 .. T-1``, returns the enumerated sites' values
# (name -> array with a leading time axis), recorded as ``SCAN_DECIDED_KEY`` sites.


def _roll(
    leaf: Any, like: Any, blocks: Sequence[tuple], shift: int, history: int, names: tuple
) -> Array:
    """A carry (or output) leaf with the content of block ``b`` moved to block
    ``b - shift`` (blocks taken cyclically), shaped like ``like``. A block
    that moves past either end must have size 1: after a step (``shift=1``)
    that is the oldest block, which the step may not pass on."""
    x, like = jnp.asarray(leaf), jnp.asarray(like)
    if not shift and x.shape == like.shape and x.dtype == like.dtype:
        return x
    rank = max(x.ndim, -min(d for b in blocks for d in b))
    x = x.reshape((1,) * (rank - x.ndim) + x.shape)
    n = len(blocks)
    perm = list(range(rank))
    for b, block in enumerate(blocks):
        dst = b - shift
        for a in block if not 0 <= dst < n else ():
            if x.shape[a] != 1:
                raise SiteError(
                    f"scan (enumerated sites {list(names)}): the carry (or output) "
                    f"of a step has size {x.shape[a]} at dim {a}, where those of the "
                    f"step {history} steps before lie: it reaches back {history + 1} "
                    f"steps, but history={history}. Carry only values of the last "
                    f"{history} step(s), or raise history."
                )
        for a, c in zip(block, blocks[dst % n]):
            perm[rank + c] = rank + a
    if shift:
        x = jnp.transpose(x, perm)
    lead = x.ndim - like.ndim
    if lead > 0:
        if any(s != 1 for s in x.shape[:lead]):
            raise ShapeError(
                f"scan: a carry leaf has shape {x.shape} after a step, but "
                f"{like.shape} after the first {history} step(s). Keep the carry's "
                "shape fixed."
            )
        x = x.reshape(x.shape[lead:])
    try:
        return jnp.broadcast_to(x, like.shape).astype(like.dtype)
    except ValueError as err:
        raise ShapeError(
            f"scan: a carry (or output) leaf has shape {x.shape} after a step, but "
            f"{like.shape} after the first {history} step(s). Keep its shape fixed."
        ) from err


def _stack(first: list, rest: PyTree | None) -> PyTree:
    """Per-step pytrees of the unrolled steps, stacked, then ``rest``."""
    head = jax.tree.map(lambda *a: jnp.stack(a), *first)
    if rest is None:
        return head
    return jax.tree.map(lambda a, b: jnp.concatenate([a.astype(b.dtype), b]), head, rest)


def _enum_names(records: list[_Record], names: tuple[str, ...]) -> None:
    got = tuple(r.msg.name for r in records if ENUM_DIM_KEY in r.msg.infer)
    if got != names:
        raise SiteError(
            f"scan: the first step enumerated {list(names)}, a later step "
            f"{list(got)}. Every step must enumerate the same sites."
        )


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
    """The scan with enumerated sites summed out by the enum handler's reducer:
    the first ``k = min(history, T)`` steps unrolled, step ``j`` enumerated in
    block ``j``, the others in ``lax.scan`` (see ``ChainLayout``)."""
    outer_enum = ctx.outer_enum
    assert outer_enum is not None
    if outer_enum.chain_reducer is None:
        raise SiteError(
            f"sample site {names[0]!r}: marked for enumeration inside jsvi.scan, "
            "which only TraceEnum_ELBO, infer_discrete and log_likelihood sum "
            "out. Use TraceEnum_ELBO, or sample the site in the guide."
        )
    m, n = len(names), ctx.length
    k = max(1, min(history, n))
    blocks = tuple(tuple(first_dim - b * m - i for i in range(m)) for b in range(k + 1))
    layout = ChainLayout(
        blocks[k - 1], blocks[k], names, outer_enum.max_plate_nesting, outer, blocks[: k - 1]
    )
    reducer = outer_enum.chain_reducer(layout)
    state = reducer.start(_sites(records0))
    carry, ys0, head = carry0, [y0], [records0]
    for j in range(1, k):
        x = jax.tree.map(lambda a, j=j: a[j - 1], rest)
        local = outer_enum.scan_child(blocks[j][0])
        carry, y, records = _run_step(f, carry, x, j, ctx, local)
        _check_same_sites(records0, _kinds(records))
        _enum_names(records, names)
        state = reducer.extend(state, _sites(records))
        ys0.append(y)
        head.append(records)
    outputs = bool(getattr(reducer, "has_step_outputs", False))
    meta: list[list[tuple[str, str]]] = []

    def roll(tree: PyTree, like: PyTree, shift: int) -> PyTree:
        return jax.tree.map(lambda a, b: _roll(a, b, blocks, shift, k, names), tree, like)

    def payload(records: list[_Record]) -> list:
        return [_payload(r, False) for r in records if _stackable(r)]

    like_y, like_p = ys0[-1], payload(head[-1])
    first_ys = [roll(y, like_y, j + 1 - k) for j, y in enumerate(ys0)]
    first_p = [roll(payload(r), like_p, j + 1 - k) for j, r in enumerate(head)]

    def body(carry: tuple, inp: tuple) -> tuple:
        user, state = carry
        t, x = inp
        local = outer_enum.scan_child(blocks[k][0])
        user_new, y, records = _run_step(f, user, x, t, ctx, local)
        meta.append(_kinds(records))
        _enum_names(records, names)
        state = reducer.step(state, _sites(records))
        out = None
        if outputs:
            state, out = state
        user_new = roll(user_new, carry_like, 1)
        return (user_new, state), (roll(y, like_y, 1), roll(payload(records), like_p, 1), out)

    carry_like = carry
    if n == k:
        outs, ys_rest, rest_payload = None, None, None
    else:
        rest = jax.tree.map(lambda a: a[k - 1 :], rest)
        (carry, state), (ys_rest, rest_payload, outs) = jax.lax.scan(
            body, (carry, state), (jnp.arange(k, n), rest)
        )
        _check_same_sites(records0, meta[0])
    ys, stacked = _stack(first_ys, ys_rest), _stack(first_p, rest_payload)
    log_factor = reducer.finish(state)
    chain_site = f"_jsvi/scan/{names[0]}"
    apply_stack(
        Message(
            kind="sample",
            name=chain_site,
            fn=FactorDensity(log_factor),
            value=jnp.zeros(jnp.shape(log_factor)),
            is_observed=True,
        )
    )
    _record_stacked(records0, stacked, n, summed=chain_site)
    if outputs:
        _record_decided(records0, reducer.decide(state, outs), n, chain_site)
    return carry, ys


def _record_decided(
    records: list[_Record], values: dict, length: int, chain_site: str
) -> None:
    for record in records:
        msg = record.msg
        if msg.name not in values:
            continue
        infer = {k: v for k, v in msg.infer.items() if k != ENUM_DIM_KEY}
        infer.update({SCAN_LENGTH_KEY: length, SCAN_DECIDED_KEY: True})
        infer[SCAN_SUMMED_KEY] = chain_site
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


