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
  algorithm) inside the loop, carrying the filter message. With ``history =
  k`` a step may depend (through the carry) on the enumerated sites of the
  ``k`` steps before it, and the message is a table over their values. The
  first ``k`` steps run unrolled; step ``j`` enumerates its sites in block
  ``j`` of dims (``F - j*m, F - j*m - 1, ...`` for ``m`` enumerated sites a
  step, ``F`` left of every dim in use), later steps in block ``k``; after
  each later step the blocks move back by one (block ``b + 1`` becomes block
  ``b``), so the carry's shape is the same at every step, and the carry may
  not hold the oldest block's sites any more. The summed-out log-density is
  recorded as one observed site ``"_jsvi/scan/<first enumerated site>"`` in
  the plates around the call, where the ``scale`` and ``mask`` around the call
  apply to it; the other sites of ``f`` are recorded stacked, marked
  ``infer["_scan_summed"]`` (the name of that site, which holds their
  log-density).
* A reducer may also decide the enumerated sites (``infer_discrete``: Viterbi
  or forward filtering with backward sampling); they are then recorded stacked,
  marked ``infer["_scan_decided"]``.

May import: ``jsvi.core.*``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import PyTree
from jsvi.core import runtime
from jsvi.core._scan_chain import ChainLayout, ChainReducer, _enumerated
from jsvi.core._scan_steps import (
    SCAN_DECIDED_KEY,
    SCAN_LENGTH_KEY,
    SCAN_SUMMED_KEY,
    _check_same_sites,
    _concat,
    _Context,
    _kinds,
    _payload,
    _record_stacked,
    _run_step,
    _stackable,
)
from jsvi.core.enumeration import ENUM_DIM_KEY, enum
from jsvi.core.plates import _enclosing_frames
from jsvi.core.primitives import prng_key
from jsvi.core.runtime import stack_is_empty
from jsvi.errors import ArgumentError, ShapeError

__all__ = [
    "SCAN_DECIDED_KEY",
    "SCAN_LENGTH_KEY",
    "SCAN_SUMMED_KEY",
    "ChainLayout",
    "ChainReducer",
    "scan",
]

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
            (through the carry). Enumerated chains cost ``K**(history+1)`` per
            step and chain for ``K`` values a step.

    Returns:
        ``(carry, ys)``: the last carry and the stacked per-step outputs.

    Raises:
        ArgumentError: bad ``history``/``length``.
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
        return _enumerated(
            f, ctx, carry0, y0, records0, rest, names, first_dim, outer, history
        )
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
    _record_stacked(records0, stacked, n, summed=None)
    return carry, ys


