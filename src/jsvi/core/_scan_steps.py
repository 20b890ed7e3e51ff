"""The steps of ``jsvi.scan``: the handler that runs one step under the
handlers around the call, and the stacking of its sites over time.

``_Step`` is the innermost handler of one step (see ``jsvi.core.scan`` for
what the handlers around the call see); ``_record_stacked`` gives the stacked
sites to the ``trace`` handlers after the loop.

May import: ``jsvi.core.*``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jsvi._typing import Array, PyTree
from jsvi.core.enumeration import ENUM_DIM_KEY, MARKOV_KIND, enum
from jsvi.core.primitives import FactorDensity
from jsvi.core.runtime import Handler, Message
from jsvi.core.trace import Site
from jsvi.errors import ArgumentError, ShapeError, SiteError

__all__ = ["SCAN_DECIDED_KEY", "SCAN_LENGTH_KEY", "SCAN_SUMMED_KEY"]

#: ``site.infer`` key of a site recorded by ``scan``: the length of its time axis.
SCAN_LENGTH_KEY = "_scan_length"

#: ``site.infer`` key of an enumerated site of a ``scan`` whose values a chain
#: reducer decided (``infer_discrete``): its value is the stacked decision.
SCAN_DECIDED_KEY = "_scan_decided"

#: ``site.infer`` key of a stacked site whose log-density an enumerated ``scan``
#: already holds in its ``"_jsvi/scan/..."`` site (the key's value is that
#: site's name); estimators skip it.
SCAN_SUMMED_KEY = "_scan_summed"

_VALUE_HANDLERS = ("replay", "substitute", "condition")


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
    records: list[_Record], stacked: list[PyTree], length: int, summed: str | None
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
                infer[SCAN_SUMMED_KEY] = summed
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


def _kinds(records: list[_Record]) -> list[tuple[str, str]]:
    return [(r.msg.kind, r.msg.name) for r in records]


def _check_same_sites(first: list[_Record], later: list[tuple[str, str]]) -> None:
    a, b = _kinds(first), later
    if a != b:
        raise SiteError(
            f"scan: the first step ran sites {a}, later steps {b}. Every step of "
            "jsvi.scan must run the same sites in the same order."
        )


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
