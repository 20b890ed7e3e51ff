"""The forward algorithm that sums enumerated sites out of a ``jsvi.scan``.

``ForwardReducer`` is the ``chain_reducer`` that ``TraceEnum_ELBO`` gives its
``enum`` handler (see ``jsvi.core.scan``). It carries the log filter message

.. math::
    \\alpha_t(z_t) = \\log \\sum_{z_{0:t-1}} p(z_{0:t}, x_{0:t})

through the loop: each step's site log-densities and :math:`\\alpha_{t-1}`
(over the step before's enumerated dims) go into the plated contraction of
``jsvi.infer._contract``, which sums the step before's sites out and keeps the
current ones. Terms in plates inside the step are multiplied out (summed over
their plate dims) into the chain's plates; terms that do not depend on the
chain go to a separate running sum. ``finish`` sums the last step's sites out
and the chain's own plates (those inside the step), leaving one log-density
per element of the plates around the ``scan`` call.

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
    """Sum a first-order chain of enumerated steps out (``jsvi.scan``).

    Args:
        layout: where the enumerated sites of the steps lie.
        maximize: max-product instead of sum-product (reserved for MAP).
    """

    def __init__(self, layout: ChainLayout):
        self.layout = layout
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
        free = {d for d in self.sizes if -d > nesting and d not in lay.prev_dims}
        self.free = free
        self.alpha_dims = tuple(
            sorted(set(lay.prev_dims) | self._plate_dims(self.chain) | free)
        )
        self.extra_dims = tuple(sorted(self._plate_dims(lay.outer_plates) | free))
        for p in self.plates.values():
            self.sizes[p.dim] = p.subsample_size
        alpha = jnp.zeros(tuple(self.sizes[d] for d in self.alpha_dims))
        extra = jnp.zeros(tuple(self.sizes[d] for d in self.extra_dims))
        return self._accumulate(factors, {}, alpha, extra)

    def step(self, state: tuple[Array, Array], sites: Sequence[Site]) -> tuple:
        lay = self.layout
        alpha, extra = state
        factors = self._factors(sites)
        factors.append((Factor(alpha, self.alpha_dims), self.chain))
        names = dict(zip(lay.prev_dims, lay.names))
        variables = {d: Variable(names[d], self.chain) for d in lay.prev_dims}
        free = {d: Variable(n, self.chain) for d, n in zip(lay.new_dims, lay.names)}
        free.update({d: Variable(f"(dim {d})", frozenset()) for d in self.free})
        terms = contract_to_terms(factors, variables, self.plates, free)
        rename = dict(zip(lay.new_dims, lay.prev_dims))
        return self._accumulate(terms, rename, jnp.zeros_like(alpha), extra)

    def finish(self, state: tuple[Array, Array]) -> Array:
        alpha, extra = state
        lay = self.layout
        axes = tuple(self.alpha_dims.index(d) for d in lay.prev_dims)
        log = jax.nn.logsumexp(alpha, axis=axes)
        dims = tuple(d for d in self.alpha_dims if d not in lay.prev_dims)
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
                if set(dims) & set(self.layout.prev_dims):
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


def forward_reducer(layout: ChainLayout) -> Any:
    """The ``chain_reducer`` of ``TraceEnum_ELBO``."""
    return ForwardReducer(layout)
