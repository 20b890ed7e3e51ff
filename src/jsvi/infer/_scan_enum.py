"""The forward algorithm that sums enumerated sites out of a ``jsvi.scan``.

``ForwardReducer`` is the ``chain_reducer`` that ``TraceEnum_ELBO`` gives its
``enum`` handler (see ``jsvi.core.scan``). It carries the log filter message

.. math::
    \\alpha_t(z_t) = \\log \\sum_{z_{0:t-1}} p(z_{0:t}, x_{0:t})

through the loop (with ``history = k``, over the last ``k`` steps' sites:
:math:`\\alpha_t(z_{t-k+1:t})`): each step's site log-densities and
:math:`\\alpha_{t-1}` (over the blocks of dims of the steps before) go into the
plated contraction of ``jsvi.infer._contract``, which sums the oldest step's
sites out and keeps the others. Terms in plates inside the step are multiplied
out (summed over their plate dims) into the chain's plates; terms that do not
depend on the chain go to a separate running sum. ``finish`` sums the last
steps' sites out and the chain's own plates (those inside the step), leaving
one log-density per element of the plates around the ``scan`` call.

``ChainDecider`` is the reducer of ``infer_discrete``: the same forward pass,
keeping each step's table, then Viterbi or backward sampling.

May import: ``jsvi.core``, ``jsvi.infer._contract``, ``jsvi.infer._enum_factors``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array
from jsvi.core.enumeration import ENUM_DIM_KEY
from jsvi.core.scan import ChainLayout
from jsvi.core.trace import Site
from jsvi.errors import SiteError
from jsvi.infer._contract import (
    Factor,
    PlateInfo,
    Variable,
    contract_to_terms,
    to_factor,
    to_positional,
)
from jsvi.infer._enum_factors import _log_density, _masked, _ordinal

__all__ = ["ForwardReducer"]


class ForwardReducer:
    """Sum a chain of enumerated steps out (``jsvi.scan``).

    With ``history = k`` the message is a table over the enumerated sites of
    the last ``k`` steps (``K**k`` entries per chain for ``K`` values a step):
    each step adds its factors and sums the oldest step out.

    Args:
        layout: where the enumerated sites of the steps lie.
        maximize: max-product instead of sum-product (the log-density of the
            best path, for MAP assignments).
    """

    def __init__(self, layout: ChainLayout, maximize: bool = False):
        self.layout = layout
        self.maximize = maximize
        self.plates: dict[str, PlateInfo] = {}
        self.sizes: dict[int, int] = {}

    # -- per-step factors --------------------------------------------------------
    def _factors(self, sites: Sequence[Site]) -> list[tuple[Factor, frozenset]]:
        out = []
        for site in sites:
            if site.scale is not None:
                raise SiteError(
                    f"sample site {site.name!r}: scaled inside an enumerated "
                    "jsvi.scan step, whose sites are summed out together. Apply "
                    "handlers.scale around the jsvi.scan call instead."
                )
            dim = site.infer.get(ENUM_DIM_KEY)
            log_prob = _masked(site, _log_density(site, dim), dim is not None)
            factor = to_factor(log_prob)
            for d, n in zip(factor.dims, factor.log.shape):
                self.sizes[d] = n
            for f in site.cond_indep_stack:
                if f.vectorized:
                    self.plates[f.name] = PlateInfo(f.dim, f.subsample_size, 1.0)
            out.append((factor, _ordinal(site)))
        return out

    def _chain_ordinal(self, sites: Sequence[Site]) -> frozenset:
        ordinals = {
            n: _ordinal(s) for s in sites if (n := s.name) in self.layout.names
        }
        chain = frozenset.intersection(*ordinals.values())
        for name, ordinal in ordinals.items():
            if ordinal != chain:
                raise SiteError(
                    f"enumerated sites {sorted(ordinals)}: inside one jsvi.scan step "
                    f"but in different plates ({ {k: sorted(v) for k, v in ordinals.items()} }); "
                    f"{name!r} sits in more. Enumerate the sites of a step in the "
                    "same plates, or sample the extra one in the guide."
                )
        return chain

    def _plate_dims(self, names: frozenset) -> set[int]:
        return {self.plates[p].dim for p in names}

    # -- the reducer -------------------------------------------------------------
    def start(self, sites: Sequence[Site]) -> tuple[Array, Array]:
        lay = self.layout
        factors = self._factors(sites)
        self.chain = self._chain_ordinal(sites)
        nesting = lay.max_plate_nesting
        blocks = lay.blocks
        self.chain_dims = tuple(d for block in blocks for d in block)
        free = {d for d in self.sizes if -d > nesting and d not in self.chain_dims}
        self.free = free
        for block in blocks[1:]:  # later blocks hold the same sites
            self.sizes.update({d: self.sizes[d0] for d, d0 in zip(block, blocks[0])})
        self.alpha_dims = tuple(
            sorted(set(self.chain_dims) | self._plate_dims(self.chain) | free)
        )
        self.extra_dims = tuple(sorted(self._plate_dims(lay.outer_plates) | free))
        for p in self.plates.values():
            self.sizes[p.dim] = p.subsample_size
        alpha = jnp.zeros(tuple(self.sizes[d] for d in self.alpha_dims))
        extra = jnp.zeros(tuple(self.sizes[d] for d in self.extra_dims))
        return self._accumulate(factors, {}, alpha, extra)

    def extend(self, state: tuple[Array, Array], sites: Sequence[Site]) -> tuple:
        """One of the first ``history`` steps after the first: its factors are
        added, nothing is summed out yet."""
        return self._accumulate(self._factors(sites), {}, *state)

    def step(self, state: tuple[Array, Array], sites: Sequence[Site]) -> tuple:
        lay = self.layout
        alpha, extra = state
        factors = self._factors(sites)
        factors.append((Factor(alpha, self.alpha_dims), self.chain))
        blocks = lay.blocks + (lay.new_dims,)
        # the oldest block is summed out; the others move one block back
        variables = {d: Variable(n, self.chain) for d, n in zip(blocks[0], lay.names)}
        free = {
            d: Variable(n, self.chain)
            for block in blocks[1:]
            for d, n in zip(block, lay.names)
        }
        free.update({d: Variable(f"(dim {d})", frozenset()) for d in self.free})
        terms = contract_to_terms(
            factors, variables, self.plates, free, maximize=self.maximize
        )
        rename = {
            d: d0 for b in range(1, len(blocks)) for d, d0 in zip(blocks[b], blocks[b - 1])
        }
        return self._accumulate(terms, rename, jnp.zeros_like(alpha), extra)

    def finish(self, state: tuple[Array, Array]) -> Array:
        alpha, extra = state
        lay = self.layout
        axes = tuple(self.alpha_dims.index(d) for d in self.chain_dims)
        log = (jnp.max if self.maximize else jax.nn.logsumexp)(alpha, axis=axes)
        dims = tuple(d for d in self.alpha_dims if d not in self.chain_dims)
        inner = self._plate_dims(self.chain - lay.outer_plates)
        log, dims = _sum_dims(log, dims, inner)
        total = extra + _aligned(log, dims, self.extra_dims)
        if not self.extra_dims:
            return total
        return to_positional(Factor(total, self.extra_dims), -self.extra_dims[0])

    def _accumulate(
        self,
        terms: Sequence[tuple[Factor, frozenset]],
        rename: Mapping[int, int],
        alpha: Array,
        extra: Array,
    ) -> tuple[Array, Array]:
        outer = self.layout.outer_plates
        for term, ordinal in terms:
            dims = tuple(rename.get(d, d) for d in term.dims)
            log = term.log
            if ordinal >= self.chain:
                log, dims = self._multiply_out(log, dims, ordinal - self.chain)
                alpha = alpha + _aligned(log, dims, self.alpha_dims)
            else:
                if set(dims) & set(self.chain_dims):
                    raise SiteError(
                        f"enumerated sites {list(self.layout.names)}: a site outside "
                        "their plates depends on them inside jsvi.scan. A site may "
                        "only depend on enumerated sites whose plates it shares."
                    )
                log, dims = self._multiply_out(log, dims, ordinal - outer)
                extra = extra + _aligned(log, dims, self.extra_dims)
        return alpha, extra

    def _multiply_out(
        self, log: Array, dims: tuple[int, ...], plates: frozenset
    ) -> tuple[Array, tuple[int, ...]]:
        """Product over the elements of ``plates`` (a sum of log-terms)."""
        present = self._plate_dims(plates)
        factor = 1
        for p in plates:
            if self.plates[p].dim not in dims:
                factor *= self.plates[p].subsample_size
        log, dims = _sum_dims(log, dims, present)
        return (log * factor if factor != 1 else log), dims


def _sum_dims(log: Array, dims: tuple[int, ...], drop: set[int]) -> tuple[Array, tuple]:
    axes = tuple(i for i, d in enumerate(dims) if d in drop)
    if axes:
        log = jnp.sum(log, axis=axes)
    return log, tuple(d for d in dims if d not in drop)


def _aligned(log: Array, dims: tuple[int, ...], target: tuple[int, ...]) -> Array:
    """``log`` over ``dims`` laid out along ``target`` (size 1 where absent)."""
    missing = [d for d in dims if d not in target]
    if missing:
        raise SiteError(
            f"jsvi.scan: a step's log-density depends on dims {missing} that the "
            f"first step's did not ({list(target)}). Every step must depend on the "
            "same enumerated sites from outside the loop."
        )
    order = sorted(range(len(dims)), key=lambda i: target.index(dims[i]))
    log = jnp.transpose(log, order) if order != list(range(len(dims))) else log
    kept = [dims[i] for i in order]
    shape = tuple(log.shape[kept.index(d)] if d in kept else 1 for d in target)
    return log.reshape(shape)


class ChainDecider(ForwardReducer):
    """Decide a chain's enumerated sites (``infer_discrete``): a forward pass
    that keeps each step's table, then a backward pass that draws
    (``temperature=1``, forward filtering, backward sampling) or maximizes
    (``temperature=0``, Viterbi) each site given the ones after it.

    With ``history = k`` the forward messages are ``alpha_t(z_{t-k+1:t}) =
    reduce_{z_{t-k}} [alpha_{t-1}(z_{t-k:t-1}) + psi_t(z_{t-k:t})]`` with
    ``reduce`` = logsumexp (or max), ``psi_t`` the step's log-densities;
    backwards the last ``k`` states are drawn jointly from ``alpha_{T-1}``
    (or set to its argmax), then ``z_{t-k} ~ alpha_{t-1}(., z_{t-k+1:t-1}) +
    psi_t(., z_{t-k+1:t})`` for ``t = T-1 .. k``. Linear in ``T``. It decides
    only when the chain depends on no undecided enumerated site outside it;
    otherwise it only sums the chain out, like ``ForwardReducer``.
    """

    def __init__(self, layout: ChainLayout, temperature: int, rng_key: Any):
        super().__init__(layout, maximize=temperature == 0)
        self.temperature = temperature
        self.rng_key = jax.random.key(0) if rng_key is None else rng_key
        if len(layout.names) != 1:
            raise SiteError(
                f"infer_discrete: jsvi.scan step enumerates {list(layout.names)}; "
                "it decides chains of one enumerated site per step. Combine them "
                "into one site (a Categorical over the joint values)."
            )

    def start(self, sites: Sequence[Site]) -> tuple[Array, Array]:
        state = super().start(sites)
        self.has_step_outputs = not self.free
        self.pair_dims = tuple(
            sorted(set(self.alpha_dims) | set(self.layout.new_dims))
        )
        return state

    def step(self, state: tuple[Array, Array], sites: Sequence[Site]) -> tuple:
        if not self.has_step_outputs:
            return super().step(state, sites)
        alpha, extra = state
        factors = self._factors(sites)
        lay = self.layout
        blocks = lay.blocks + (lay.new_dims,)
        free = {b[0]: Variable(lay.names[0], self.chain) for b in blocks}
        terms = contract_to_terms(factors, {}, self.plates, free)
        self.sizes[lay.new_dims[0]] = self.sizes[blocks[0][0]]
        psi = jnp.zeros(tuple(self.sizes[d] for d in self.pair_dims))
        psi, extra = self._accumulate_pairs(terms, psi, extra)
        joint = psi + _aligned(alpha, self.alpha_dims, self.pair_dims)
        reduce = jnp.max if self.temperature == 0 else jax.nn.logsumexp
        # the oldest block summed out; the others, in order, become the blocks
        new = reduce(joint, axis=self.pair_dims.index(blocks[0][0]))
        return (new, extra), (alpha, psi)

    def _accumulate_pairs(self, terms: Sequence, psi: Array, extra: Array) -> tuple:
        outer = self.layout.outer_plates
        for term, ordinal in terms:
            log, dims = term.log, term.dims
            if ordinal >= self.chain:
                log, dims = self._multiply_out(log, dims, ordinal - self.chain)
                psi = psi + _aligned(log, dims, self.pair_dims)
            else:
                log, dims = self._multiply_out(log, dims, ordinal - outer)
                extra = extra + _aligned(log, dims, self.extra_dims)
        return psi, extra

    def decide(self, state: tuple[Array, Array], outputs: Any) -> dict[str, Array]:
        """The path: the last ``k`` states from the final message, the others
        one at a time backwards. ``alpha`` holds the blocks newest first
        (axes ``0 .. k-1``), then the plates; ``psi`` the new block, then the
        same."""
        alpha_last, _ = state
        lay = self.layout
        k = len(lay.blocks)

        def pick(key: Any, logits: Array) -> Array:
            if self.temperature == 0:
                return jnp.argmax(logits, axis=0)
            return jax.random.categorical(key, logits, axis=0)

        def at(table: Array, window: Array) -> Array:
            """``table`` with its leading axes fixed at ``window``'s states,
            newest first, down to one axis."""
            for z in window:
                index = z.reshape((1,) * (table.ndim - z.ndim) + z.shape)
                table = jnp.take_along_axis(table, index, axis=0)[0]
            return table

        keys = jax.random.split(self.rng_key, 2)
        plates = alpha_last.shape[k:]
        size = alpha_last.shape[0]
        flat = pick(keys[0], alpha_last.reshape((size**k,) + plates))
        last = jnp.stack(jnp.unravel_index(flat, (size,) * k))  # newest first
        if outputs is None:
            path = last[::-1]
        else:
            alphas, psis = outputs

            def back(window: Array, inp: tuple) -> tuple:
                alpha, psi, key = inp
                z = pick(key, at(psi, window) + at(alpha, window[1:]))
                return jnp.concatenate([window[1:], z[None]]), z

            steps = alphas.shape[0]
            xs = (alphas, psis, jax.random.split(keys[1], steps))
            _, earlier = jax.lax.scan(back, last, xs, reverse=True)
            path = jnp.concatenate([earlier, last[::-1]])
        plate_dims = [d for d in self.alpha_dims if d not in self.chain_dims]
        low = min(plate_dims, default=-1)
        shape = tuple(
            path.shape[1 + plate_dims.index(d)] if d in plate_dims else 1
            for d in range(low, 0)
        )
        return {lay.names[0]: path.reshape((path.shape[0],) + shape)}


def forward_reducer(layout: ChainLayout) -> Any:
    """The ``chain_reducer`` of ``TraceEnum_ELBO``."""
    return ForwardReducer(layout)
