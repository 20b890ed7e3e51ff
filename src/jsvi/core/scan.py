"""``scan``: a loop over time compiled as one ``lax.scan``.

``carry, ys = scan(f, init, xs)`` runs ``f(carry, x)`` once per step, like
``jax.lax.scan``, and lets ``f`` hold ``sample``/``param``/``deterministic``
sites and plates. The body is traced once, so compile time does not depend on
the number of steps ``T``.

How the handlers around the call see the steps:

* The first step runs unrolled, the others inside ``lax.scan``. Inside a step,
  the handlers active at the call (plates, ``scale``, ``mask``, ``replay``,
  ``substitute``, ``condition``, ``seed``, ...) act on each site as they would
  outside, with three differences: a value that ``replay``/``substitute``/
  ``condition`` supply for a sample site carries a leading time axis and the
  step takes its row ``t``; ``seed`` gives step ``t`` keys derived from one key
  of the call and ``t``; nothing is recorded per step.
* After the loop each sample/deterministic site is recorded once, by the
  ``trace`` handlers around the call, with a leading time axis of length ``T``
  on its value and on its distribution's batch shape (the per-step
  distributions, stacked); ``site.infer["_scan_length"]`` is ``T``. Params and
  plates inside ``f`` are recorded once, as of the first step.
* Under an ``enum`` handler (``TraceEnum_ELBO``), sites of ``f`` marked for
  enumeration are summed out by the handler's ``chain_reducer`` (the forward
  algorithm) inside the loop, carrying the filter message. The enumerated
  sites of the first step take dims ``F, F-1, ...`` left of every dim in use;
  those of later steps the next ones, ``F-m, F-m-1, ...``, and the carry is
  moved back onto the first set after each step, so its shape is the same at
  every step. The summed-out log-density is recorded as one observed site
  ``"_jsvi/scan/<first enumerated site>"`` in the plates around the call, where
  the ``scale`` and ``mask`` around the call apply to it; the other sites of
  ``f`` are recorded stacked, marked ``infer["_scan_summed"]`` (their
  log-density is in that site). ``history`` must then be 0 or 1.
* A reducer may also decide the enumerated sites (``infer_discrete``: Viterbi
  or forward filtering with backward sampling); they are then recorded stacked,
  marked ``infer["_scan_decided"]``.

May import: ``jsvi.core.*``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, PyTree
from jsvi.core import runtime
from jsvi.core.enumeration import ENUM_DIM_KEY, MARKOV_KIND, enum
from jsvi.core.plates import _enclosing_frames
from jsvi.core.primitives import FactorDensity, prng_key
from jsvi.core.runtime import Handler, Message, apply_stack, stack_is_empty
from jsvi.core.trace import Site
from jsvi.errors import ArgumentError, ShapeError, SiteError

__all__ = [
    "SCAN_DECIDED_KEY",
    "SCAN_LENGTH_KEY",
    "SCAN_SUMMED_KEY",
    "ChainLayout",
    "ChainReducer",
    "scan",
]

#: ``site.infer`` key of a site recorded by ``scan``: the length of its time axis.
SCAN_LENGTH_KEY = "_scan_length"

#: ``site.infer`` key of an enumerated site of a ``scan`` whose values a chain
#: reducer decided (``infer_discrete``): its value is the stacked decision.
SCAN_DECIDED_KEY = "_scan_decided"

#: ``site.infer`` key of a stacked site whose log-density an enumerated ``scan``
#: already holds in its ``"_jsvi/scan/..."`` site; estimators skip it.
SCAN_SUMMED_KEY = "_scan_summed"

_VALUE_HANDLERS = ("replay", "substitute", "condition")


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


class _Context(NamedTuple):
    handlers: tuple[Handler, ...]  # around the call, outermost first
    key: Any  # the call's key, or None without a seed handler
    length: int
    outer_enum: enum | None
    params: dict[str, Any]  # param values of the first step, reused by the others


class _Record(NamedTuple):
    msg: Message
    applied: list[Handler]  # handlers that saw the message, innermost first
    inner_scale: Any  # scale and mask from handlers inside ``f`` only
    inner_mask: Any


def _needs_key(msg: Message) -> bool:
    return msg.value is None and (
        msg.kind in ("sample", "plate")
        or (msg.kind == "param" and callable(msg.args[0]))
    )


def _row(name: str, value: Any, t: Any, length: int) -> Array:
    value = jnp.asarray(value)
    if value.ndim == 0 or value.shape[0] != length:
        raise ShapeError(
            f"sample site {name!r}: inside jsvi.scan of length {length}, but the value "
            f"supplied for it from outside (replay/substitute/condition) has shape "
            f"{value.shape}. Values of sites inside jsvi.scan carry a leading time "
            f"axis: stack the {length} per-step values along axis 0."
        )
    return value[t]


class _Step(Handler):
    """Innermost handler of one step: applies the handlers around the ``scan``
    call to the step's sites (see the module docstring) and collects them."""

    def __init__(self, ctx: _Context, t: Any, local_enum: enum | None):
        super().__init__()
        self.ctx, self.t, self.local_enum = ctx, t, local_enum
        self.first = isinstance(t, int)  # the unrolled first step

    def _on_enter(self) -> _Step:
        self.records: list[_Record] = []
        self.counter = 0
        return self

    def _key(self) -> Any:
        if self.ctx.key is None:
            return None
        self.counter += 1
        step_key = jax.random.fold_in(self.ctx.key, self.t)
        return jax.random.fold_in(step_key, self.counter)

    def process(self, msg: Message) -> None:
        if msg.kind == "_frames":
            return  # the plates around the call answer it themselves
        msg.stop = True
        if msg.kind == MARKOV_KIND:
            if self.local_enum is not None:
                self.local_enum.process(msg)
            return
        if msg.kind == "prng_key":
            msg.rng_key = self._key()
            return
        if msg.kind not in ("sample", "param", "plate", "deterministic"):
            return
        if msg.kind == "plate" and msg.args[0] != msg.args[1]:
            raise ArgumentError(
                f"plate {msg.name!r}: subsampled inside jsvi.scan. Put the "
                "subsampled plate around the jsvi.scan call instead."
            )
        record = _Record(msg, [], msg.scale, msg.mask)
        if msg.kind == "param" and msg.name in self.ctx.params and not self.first:
            # the first step's value: constraining it again each step is waste
            msg.value = self.ctx.params[msg.name]
            self.records.append(record)
            return
        msg.stop = False
        for h in reversed(self.ctx.handlers):
            kind = type(h).__name__
            if kind == "trace":
                record.applied.append(h)  # records the stacked site afterwards
                continue
            if kind == "_replayed_shapes":
                continue  # compares per-step shapes with stacked values
            if kind == "seed":
                if _needs_key(msg) and msg.rng_key is None:
                    msg.rng_key = self._key()
                continue
            if isinstance(h, enum):
                if self.local_enum is not None:
                    self.local_enum.process(msg)
                continue
            before = msg.value
            h.process(msg)
            record.applied.append(h)
            if kind in _VALUE_HANDLERS and msg.kind == "sample" and msg.value is not before:
                msg.value = _row(msg.name, msg.value, self.t, self.ctx.length)
            if msg.stop:
                break
        msg.stop = True
        self.records.append(record)

    def postprocess(self, msg: Message) -> None:
        if msg.kind == "param" and self.first:
            self.ctx.params.setdefault(msg.name, msg.value)


def _run_step(
    f: Callable, carry: PyTree, x: PyTree, t: Any, ctx: _Context, local: enum | None
) -> tuple[PyTree, PyTree, list[_Record]]:
    with _Step(ctx, t, local) as step:
        carry, y = f(carry, x)
    return carry, y, step.records


def _stackable(record: _Record) -> bool:
    msg = record.msg
    return msg.kind in ("sample", "deterministic") and ENUM_DIM_KEY not in msg.infer


def _fn_kind(record: _Record) -> str | None:
    """How a site's distribution is stacked: as itself (a pytree), or as its
    log-density (``FactorDensity``, or a distribution that is no pytree)."""
    fn = record.msg.fn
    if record.msg.kind != "sample":
        return None
    if isinstance(fn, FactorDensity) or jax.tree.leaves(fn) == [fn]:
        return "factor"
    return "dist"


def _payload(record: _Record, with_fn: bool = True) -> PyTree:
    """The arrays of one step's site that are stacked over time."""
    msg = record.msg
    kind = _fn_kind(record)
    if kind is None or not with_fn:
        return (jnp.asarray(msg.value), None, None, None)
    if kind == "dist":
        fn_part: Any = msg.fn
    elif isinstance(msg.fn, FactorDensity):
        fn_part = msg.fn.log_factor
    else:
        fn_part = msg.fn.log_prob(msg.value)
    scale = msg.scale if isinstance(msg.scale, jax.Array) else None
    mask = msg.mask if isinstance(msg.mask, jax.Array) else None
    return (jnp.asarray(msg.value), fn_part, scale, mask)


def _concat(first: PyTree, rest: PyTree | None) -> PyTree:
    if rest is None:
        return jax.tree.map(lambda a: jnp.asarray(a)[None], first)

    def cat(a: Any, b: Array) -> Array:
        a = jnp.broadcast_to(jnp.asarray(a, b.dtype), b.shape[1:])
        return jnp.concatenate([a[None], b])

    return jax.tree.map(cat, first, rest)


def _stacked_extra(x: Any, rank: int) -> Any:
    """A stacked per-step scale or mask ``(T, *s)`` laid out to broadcast with
    a stacked log-density ``(T, *batch)`` of ``rank`` batch dims."""
    if x is None:
        return None
    lead = rank - (x.ndim - 1)
    return x.reshape((x.shape[0],) + (1,) * max(lead, 0) + x.shape[1:])


def _record_stacked(
    records: list[_Record], stacked: list[PyTree], length: int, summed: bool
) -> None:
    """Give the stacked sites to the handlers that would record them."""
    it = iter(stacked)
    for record in records:
        msg = record.msg
        if msg.kind in ("param", "plate"):
            out = msg
        elif not _stackable(record):
            continue
        else:
            value, fn_part, scale, mask = next(it)
            infer = {**msg.infer, SCAN_LENGTH_KEY: length}
            if summed:
                infer[SCAN_SUMMED_KEY] = True
            kind = _fn_kind(record)
            if summed:
                fn = msg.fn  # the first step's: the site is not scored on its own
            else:
                fn = fn_part if kind != "factor" else FactorDensity(fn_part)
            rank = len(tuple(fn.batch_shape)) - 1 if fn is not None else 0
            out = Message(
                kind=msg.kind,
                name=msg.name,
                fn=fn,
                value=value,
                is_observed=msg.is_observed,
                infer=infer,
                scale=msg.scale if scale is None else _stacked_extra(scale, rank),
                mask=msg.mask if mask is None else _stacked_extra(mask, rank),
                cond_indep_stack=msg.cond_indep_stack,
            )
        for h in record.applied:
            h.postprocess(out)


def _length(xs: PyTree, length: int | None) -> int:
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(xs)}
    if None in sizes:
        raise ShapeError(
            "scan: every leaf of xs needs a leading time axis; one is a scalar. "
            "Pass per-step values stacked along axis 0."
        )
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
            raise ArgumentError(f"scan: length must be an int, got {length!r}.")
        sizes.add(int(length))
    if len(sizes) != 1:
        raise ShapeError(
            f"scan: the leading (time) axes of xs and length disagree: {sorted(sizes)}. "
            "Give every leaf of xs the same number of steps (and length that number)."
        )
    (n,) = sizes
    if n < 1:
        raise ArgumentError(f"scan: needs at least one step, got length {n}.")
    return int(n)


def scan(
    f: Callable[[Any, Any], tuple[Any, Any]],
    init: PyTree,
    xs: PyTree,
    length: int | None = None,
    history: int = 1,
) -> tuple[PyTree, PyTree]:
    """``jax.lax.scan`` for model and guide code: ``f`` may hold sites.

    Each sample (and deterministic) site of ``f`` appears once in a trace, with
    a leading time axis of length ``T`` on its value and batch shape. Plates may
    sit around the call or inside ``f`` (not subsampled). Under
    ``TraceEnum_ELBO``, sites of ``f`` marked for enumeration are summed out by
    a forward pass over time, so time and memory grow linearly in ``T`` and
    compile time not at all. See the module docstring for the details.

    Args:
        f: the step, ``f(carry, x) -> (carry, y)``; the carry keeps its shape.
        init: the initial carry.
        xs: per-step inputs, stacked along axis 0 (or None with ``length``).
        length: the number of steps ``T`` (default: the leading axis of ``xs``).
        history: how many earlier steps a step's enumerated sites may depend on
            (through the carry): 0 or 1 where sites are enumerated.

    Returns:
        ``(carry, ys)``: the last carry and the stacked per-step outputs.

    Raises:
        ArgumentError: bad ``history``/``length``, or enumerated sites with
            ``history`` above 1.
        ShapeError: ``xs`` and ``length`` disagree, or a value supplied from
            outside lacks the time axis.
        SiteError: an enumerated site where no estimator sums it out, or a
            carry that reaches back more than ``history`` steps.

    Example:
        >>> import jax, jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model(ys):
        ...     def step(x_prev, y):
        ...         x = jsvi.sample("x", dist.Normal(x_prev, 1.0))
        ...         jsvi.sample("y", dist.Normal(x, 0.5), obs=y)
        ...         return x, None
        ...     return jsvi.scan(step, 0.0, ys)
        >>> tr = handlers.trace(handlers.seed(model, rng_key=0)).get_trace(jnp.zeros(50))
        >>> tr["x"].value.shape, tr["y"].fn.batch_shape
        ((50,), (50,))
    """
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise ArgumentError(
            f"scan: history must be an int >= 0, got {history!r}. Use history=1 "
            "when a step depends on the one before it through the carry."
        )
    n = _length(xs, length)
    if stack_is_empty():
        return jax.lax.scan(f, init, xs, length=n)
    handlers = runtime.active_handlers()  # the handlers around the call
    outer_enum = next((h for h in reversed(handlers) if isinstance(h, enum)), None)
    ctx = _Context(handlers, prng_key(), n, outer_enum, {})
    outer = frozenset(fr.name for fr in _enclosing_frames() if fr.vectorized)
    first_dim = outer_enum.scan_first_dim() if outer_enum is not None else 0
    local = outer_enum.scan_child(first_dim) if outer_enum is not None else None
    x0 = jax.tree.map(lambda x: x[0], xs)
    rest = jax.tree.map(lambda x: x[1:], xs)
    carry0, y0, records0 = _run_step(f, init, x0, 0, ctx, local)
    names = tuple(r.msg.name for r in records0 if ENUM_DIM_KEY in r.msg.infer)
    if names:
        return _enumerated(f, ctx, carry0, y0, records0, rest, names, first_dim, outer, history)
    meta: list[list[tuple[str, str]]] = []  # static: (kind, name) of each site

    def body(carry: PyTree, inp: tuple) -> tuple:
        t, x = inp
        local_t = outer_enum.scan_child(first_dim) if outer_enum is not None else None
        carry, y, records = _run_step(f, carry, x, t, ctx, local_t)
        meta.append(_kinds(records))
        return carry, (y, [_payload(r) for r in records if _stackable(r)])

    payload0 = [_payload(r) for r in records0 if _stackable(r)]
    if n == 1:
        carry, ys, stacked = carry0, _concat(y0, None), _concat(payload0, None)
    else:
        carry, (ys_rest, rest_payload) = jax.lax.scan(
            body, carry0, (jnp.arange(1, n), rest)
        )
        _check_same_sites(records0, meta[0])
        ys, stacked = _concat(y0, ys_rest), _concat(payload0, rest_payload)
    _record_stacked(records0, stacked, n, summed=False)
    return carry, ys


def _kinds(records: list[_Record]) -> list[tuple[str, str]]:
    return [(r.msg.kind, r.msg.name) for r in records]


def _check_same_sites(first: list[_Record], later: list[tuple[str, str]]) -> None:
    a, b = _kinds(first), later
    if a != b:
        raise SiteError(
            f"scan: the first step ran sites {a}, later steps {b}. Every step of "
            "jsvi.scan must run the same sites in the same order."
        )


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


def _sites(records: list[_Record]) -> list[Site]:
    """The step's sample sites as the reducer sees them: the scale and mask of
    handlers inside ``f`` only (those around the call apply to the summed-out
    site)."""
    out = []
    for r in records:
        if r.msg.kind != "sample":
            continue
        site = Site.from_message(r.msg)
        out.append(
            Site(
                kind=site.kind,
                name=site.name,
                fn=site.fn,
                value=site.value,
                is_observed=site.is_observed,
                infer=site.infer,
                scale=r.inner_scale,
                mask=r.inner_mask,
                cond_indep_stack=site.cond_indep_stack,
            )
        )
    return out
