r"""Deciding a ``jsvi.markov`` chain of enumerated sites in one pass (used by
``infer_discrete``): Viterbi at temperature 0, forward filtering with backward
sampling at temperature 1, linear in the chain's length.

``ChainRecorder`` is a handler placed outside ``enum``: it follows the step
messages of ``jsvi.markov`` and records, for each enumerated site, the chain
(innermost loop) it was sampled in, its step and the loop's ``history`` ``h``.

``decide_chain`` takes one trace run under ``enum`` and a chain with one
enumerated site per step, all of one support size and in the same plates.
Every site whose log-density depends on a site of the chain gives a potential
``psi_t(z_{t-h}, ..., z_t)`` per element of the chain's plates (sites in plates
inside the chain's are multiplied out over their elements; ``h = 1`` for
``history=0``). The forward messages run over the last ``h`` states,

.. math::
    \alpha_t(z_{t-h+1:t}) = \operatorname{reduce}_{z_{t-h}}
        \left[\alpha_{t-1}(z_{t-h:t-1}) + \psi_t(z_{t-h:t})\right]

with reduce = logsumexp (or max) and :math:`\alpha_{-1} = 0` (the axes of
steps before the first are constant). Backwards, the last ``h`` states are
drawn jointly from :math:`\alpha_{T-1}` (or set to its argmax), then
:math:`z_{t-h} \sim \alpha_{t-1}(\cdot, z_{t-h+1:t-1}) + \psi_t(\cdot,
z_{t-h+1:t})` for ``t = T-1 .. h``. Both passes are one ``lax.scan``; time and
memory are ``O(T K^(h+1))`` per plate element. It returns ``None`` when the
chain does not have that shape (a site outside the chain depends on it or it on
an undecided one outside it, several enumerated sites per step, sites of
different sizes or plates); ``infer_discrete`` then decides the sites one by
one.

May import: ``jsvi.core``, ``jsvi.infer._contract``, ``jsvi.infer._enum_factors``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jsvi._typing import Array
from jsvi.core.enumeration import ENUM_DIM_KEY, ENUM_LIVE_KEY, MARKOV_KIND
from jsvi.core.runtime import Handler, Message
from jsvi.core.scan import SCAN_SUMMED_KEY
from jsvi.core.trace import Site, Trace
from jsvi.infer._contract import to_factor
from jsvi.infer._enum_factors import _enum_dims, _log_density, _masked, _ordinal

__all__ = ["ChainRecorder", "ChainStep", "chain_of", "decide_chain"]


class ChainStep(NamedTuple):
    """Where an enumerated site was sampled: its ``markov`` loop (a token),
    the step within it, and the loop's ``history``."""

    token: Any
    step: int
    history: int


class ChainRecorder(Handler):
    """Record the innermost ``markov`` step of each enumerated site.

    Use it as a context manager around a run under ``enum``; ``with`` binds the
    dict site name -> ``ChainStep`` it fills.
    """

    def _on_enter(self) -> dict[str, ChainStep]:
        self._active: list[list[Any]] = []  # [token, history, step], innermost last
        self.steps: dict[str, ChainStep] = {}
        return self.steps

    def process(self, msg: Message) -> None:
        if msg.kind == MARKOV_KIND:
            action, token, history = msg.args
            if action == "enter":
                self._active.append([token, history, -1])
            elif action == "step":
                for chain in self._active:
                    if chain[0] is token:
                        chain[2] += 1
            else:
                self._active = [c for c in self._active if c[0] is not token]
            return
        if msg.kind == "sample" and ENUM_DIM_KEY in msg.infer and self._active:
            token, history, step = self._active[-1]
            self.steps[msg.name] = ChainStep(token, step, history)


def chain_of(name: str, steps: dict[str, ChainStep], pending: list[str]) -> list[str]:
    """The pending enumerated sites of ``name``'s chain, in the order they ran."""
    token = steps[name].token
    return [n for n in pending if n in steps and steps[n].token is token]


def decide_chain(
    tr: Trace,
    chain: list[str],
    steps: dict[str, ChainStep],
    pending: list[str],
    nesting: int,
    temperature: int,
    rng_key: Any,
) -> dict[str, Array] | None:
    """The decided values (site name -> index array, positional over the
    ``nesting`` plate dims) of the sites of ``chain``, or ``None`` when the
    chain cannot be decided in one pass (see the module docstring)."""
    sites = [tr[n] for n in chain]
    if any(SCAN_SUMMED_KEY in s.infer for s in sites):
        return None  # a jsvi.scan inside the loop: its own reducer decides it
    history = max(1, steps[chain[0]].history)
    if len({steps[n].step for n in chain}) != len(chain):
        return None  # several enumerated sites in one step
    ordinal = _ordinal(sites[0])
    if any(_ordinal(s) != ordinal for s in sites):
        return None
    sizes = {s.value.shape[s.infer[ENUM_DIM_KEY]] for s in sites}
    if len(sizes) != 1:
        return None
    (size,) = sizes
    batch = [1] * nesting
    for frame in sites[0].cond_indep_stack:
        if frame.vectorized:
            batch[nesting + frame.dim] = frame.subsample_size
    position = {n: i for i, n in enumerate(chain)}
    undecided = set(pending)
    psi: list[Any] = [0.0 for _ in chain]
    for site in tr.sample_sites().values():
        if SCAN_SUMMED_KEY in site.infer:
            continue
        term = _potential(site, position, undecided, ordinal, nesting, history)
        if term is None:
            return None
        if term is not False:
            t, log = term
            psi[t] = psi[t] + log
    full = (size,) * (history + 1) + tuple(batch)
    stacked = jnp.stack([jnp.broadcast_to(p, full) for p in psi])
    path = _decode(stacked, history, temperature, rng_key)
    return {n: path[i] for i, n in enumerate(chain)}


def _potential(
    site: Site,
    position: dict[str, int],
    undecided: set[str],
    ordinal: frozenset,
    nesting: int,
    history: int,
) -> tuple[int, Array] | bool | None:
    """``(t, psi)``: the site's log-density as a potential of step ``t``, shape
    ``(K or 1, ..., K or 1, *plate dims)`` over ``(z_{t-history}, ..., z_t)``;
    ``False`` if it depends on no undecided site; ``None`` if it depends on one
    outside the chain, on steps more than ``history`` apart, or lies outside the
    chain's plates."""
    live = {
        d: n for d, n in site.infer.get(ENUM_LIVE_KEY, {}).items() if n in undecided
    }
    dim = site.infer.get(ENUM_DIM_KEY)
    log = _masked(site, _log_density(site, dim), dim is not None)
    dims = _enum_dims(log, live)
    if not dims:
        return False
    names = {live[d] for d in dims}
    if not names <= set(position) or not _ordinal(site) >= ordinal:
        return None
    t = max(position[n] for n in names)
    role = {}
    for d in dims:
        lag = t - position[live[d]]
        if lag > history:
            return None
        role[d] = lag
    # multiply out the plates inside the chain's (a product over their elements)
    for frame in site.cond_indep_stack:
        if not frame.vectorized or frame.name in ordinal:
            continue
        shape = jnp.shape(log)
        if len(shape) >= -frame.dim and shape[frame.dim] > 1:
            log = jnp.sum(log, axis=frame.dim, keepdims=True)
        else:
            log = log * frame.subsample_size
    f = to_factor(log)
    enum_dims = [d for d in f.dims if d < -nesting]
    if set(enum_dims) != set(dims):
        return None
    # the earlier steps first (larger lags), then the plate dims
    order = sorted(range(len(enum_dims)), key=lambda i: -role[enum_dims[i]])
    order += list(range(len(enum_dims), len(f.dims)))
    arr = jnp.transpose(f.log, order) if order != sorted(order) else f.log
    by_lag = {role[d]: f.size(d) for d in enum_dims}
    shape = tuple(by_lag.get(lag, 1) for lag in range(history, -1, -1)) + tuple(
        f.size(d) for d in range(-nesting, 0)
    )
    return t, arr.reshape(shape)


def _decode(psi: Array, history: int, temperature: int, rng_key: Any) -> Array:
    """The decided path, ``(T, *plate dims)`` indices, from the stacked
    potentials ``psi``: ``(T, K, ..., K, *plate dims)`` with ``history + 1``
    state axes, ``z_{t-history} .. z_t`` (axes of steps before 0 constant)."""
    h = history
    reduce = jnp.max if temperature == 0 else jax.nn.logsumexp
    steps, size, batch = psi.shape[0], psi.shape[1], psi.shape[h + 2 :]

    def pick(key: Any, logits: Array) -> Array:
        if temperature == 0:
            return jnp.argmax(logits, axis=0)
        return jax.random.categorical(key, logits, axis=0)

    def forward(alpha: Array, pair: Array) -> tuple[Array, Array]:
        # alpha over (z_{t-h}, .., z_{t-1}); the new one over (z_{t-h+1}, .., z_t)
        return reduce(jnp.expand_dims(alpha, h) + pair, axis=0), alpha

    alpha_last, alphas = jax.lax.scan(
        forward, jnp.zeros((size,) * h + batch), psi
    )
    last_key, back_key = jax.random.split(rng_key)
    # the last h states jointly, from the last forward message
    flat = pick(last_key, alpha_last.reshape((size**h,) + batch))
    window = jnp.stack(jnp.unravel_index(flat, (size,) * h))  # (h, *plate dims)

    def backward(window: Array, inp: tuple) -> tuple[Array, Array]:
        # window: z_{t-h+1} .. z_t; draw z_{t-h}
        alpha, pair, key = inp
        logits = _fixed(alpha, window[: h - 1]) + _fixed(pair, window)
        z = pick(key, logits)
        return jnp.concatenate([z[None], window[:-1]]), z

    keys = jax.random.split(back_key, steps)
    # step t's message before it (alphas[t]) and its potential, t = T-1 .. 1
    _, earlier = jax.lax.scan(
        backward, window, (alphas[1:], psi[1:], keys[1:]), reverse=True
    )
    # earlier[t - 1] is z_{t-h}: the states 0 .. T-1-h come from t = h .. T-1
    return jnp.concatenate([earlier[h - 1 :], window[max(0, h - steps) :]])


def _fixed(table: Array, values: Array) -> Array:
    """``table[:, v_0, .., v_{m-1}]`` per plate element: ``table`` has ``m + 1``
    state axes then the plate dims, ``values`` is ``(m, *plate dims)``."""
    for j in reversed(range(values.shape[0])):
        index = values[j].reshape((1,) * (j + 2) + values.shape[1:])
        table = jnp.squeeze(jnp.take_along_axis(table, index, axis=j + 1), j + 1)
    return table
