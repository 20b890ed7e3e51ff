"""Deciding a ``jsvi.markov`` chain of enumerated sites in one pass (used by
``infer_discrete``): Viterbi at temperature 0, forward filtering with backward
sampling at temperature 1, linear in the chain's length.

``ChainRecorder`` is a handler placed outside ``enum``: it follows the step
messages of ``jsvi.markov`` and records, for each enumerated site, the chain
(innermost loop) it was sampled in, its step and the loop's ``history``.

``decide_chain`` takes one trace run under ``enum`` and a chain of first-order
(``history`` 0 or 1) steps, one enumerated site per step, all in the same
plates. Every site whose log-density depends on a site of the chain gives a
potential ``psi_t(z_{t-1}, z_t)`` per element of the chain's plates (sites in
plates inside the chain's are multiplied out over their elements). Forwards

.. math::
    \\alpha_0 = \\psi_0, \\qquad
    \\alpha_t(j) = \\operatorname{reduce}_i \\left[\\alpha_{t-1}(i) + \\psi_t(i, j)\\right]

with reduce = logsumexp (or max); backwards :math:`z_{T-1} \\sim \\alpha_{T-1}`
and :math:`z_{t-1} \\sim \\alpha_{t-1}(\\cdot) + \\psi_t(\\cdot, z_t)` (or the
argmax). Both passes are one ``lax.scan``. It returns ``None`` when the chain
does not have that shape (a site outside the chain depends on it, ``history``
above 1, several enumerated sites per step, sites of different sizes or
plates); ``infer_discrete`` then decides the sites one by one.

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
    if any(steps[n].history > 1 for n in chain):
        return None
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
    full = (size, size, *batch)
    psi = [jnp.zeros(full) for _ in chain]
    for site in tr.sample_sites().values():
        if SCAN_SUMMED_KEY in site.infer:
            continue
        term = _potential(site, position, undecided, ordinal, nesting)
        if term is None:
            return None
        if term is not False:
            t, log = term
            psi[t] = psi[t] + log
    return _decode(chain, sites, psi, nesting, temperature, rng_key)


def _potential(
    site: Site,
    position: dict[str, int],
    undecided: set[str],
    ordinal: frozenset,
    nesting: int,
) -> tuple[int, Array] | bool | None:
    """``(t, psi)``: the site's log-density as a potential of step ``t``, shape
    ``(K or 1, K or 1, *plate dims)`` over ``(z_{t-1}, z_t)``; ``False`` if it
    depends on no undecided site; ``None`` if it depends on one outside the
    chain, on two steps apart, or lies outside the chain's plates."""
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
        if lag > 1:
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
    arr = f.log
    if len(enum_dims) == 2 and role[enum_dims[0]] == 0:
        arr = jnp.swapaxes(arr, 0, 1)  # the earlier step first
    by_lag = {role[d]: f.size(d) for d in enum_dims}
    shape = (by_lag.get(1, 1), by_lag.get(0, 1)) + tuple(
        f.size(d) for d in range(-nesting, 0)
    )
    return t, arr.reshape(shape)


def _decode(
    chain: list[str],
    sites: list[Site],
    psi: list[Array],
    nesting: int,
    temperature: int,
    rng_key: Any,
) -> dict[str, Array]:
    """Forward messages, then the backward pass: one index array per site."""
    reduce = jnp.max if temperature == 0 else jax.nn.logsumexp
    full = psi[1].shape if len(psi) > 1 else psi[0].shape

    def pick(key: Any, logits: Array) -> Array:
        if temperature == 0:
            return jnp.argmax(logits, axis=0)
        return jax.random.categorical(key, logits, axis=0)

    alpha0 = jnp.broadcast_to(psi[0][0], full[1:])  # constant in z_{-1}
    last_key, back_key = jax.random.split(rng_key)
    if len(psi) == 1:
        return {chain[0]: pick(last_key, alpha0)}
    rest = jnp.stack([jnp.broadcast_to(p, full) for p in psi[1:]])

    def forward(alpha: Array, pair: Array) -> tuple[Array, Array]:
        return reduce(alpha[:, None] + pair, axis=0), alpha

    alpha_last, alphas = jax.lax.scan(forward, alpha0, rest)

    def backward(z_next: Array, inp: tuple) -> tuple[Array, Array]:
        alpha, pair, key = inp
        row = jnp.take_along_axis(pair, z_next[None, None], axis=1)[:, 0]
        z = pick(key, alpha + row)
        return z, z

    last = pick(last_key, alpha_last)
    keys = jax.random.split(back_key, len(psi) - 1)
    _, earlier = jax.lax.scan(backward, last, (alphas, rest, keys), reverse=True)
    path = jnp.concatenate([earlier, last[None]])
    return {n: path[i] for i, n in enumerate(chain)}
