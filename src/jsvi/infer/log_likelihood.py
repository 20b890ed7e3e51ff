"""``log_likelihood``: pointwise log-likelihoods of a model's observed sites at
posterior draws, with enumerated discrete sites summed out (for LOO and WAIC).

For an observed site ``x`` whose distribution depends on enumerated sites, the
value at plate element ``i`` is ``log sum_w p(w) p(x_i | w, theta)``: the
enumerated sites ``w`` connected to ``x`` are summed out under their prior,
separately for each element of ``x``'s plates, from the same plated
contraction ``TraceEnum_ELBO`` uses. For a mixture that is the mixture density of
each point. Other observed sites are not conditioned on. A site that depends on
no enumerated site gets its plain log-density.

A chain of enumerated sites inside ``jsvi.scan`` is one point per element of
the plates around the ``scan`` call (one independent sequence): its value is
``log p(x_0, ..., x_{T-1} | theta)`` for all observed sites of the steps
together, the chain summed out by the forward algorithm
(``jsvi.infer._scan_enum``). The steps of one sequence are not conditionally
independent given ``theta``, so per-step values would not be pointwise
likelihoods (their sum is not the sequence's log-likelihood, and leaving one
step out is not leaving one point out). The value is keyed by the observed
site of the step (``"y"``), or by the names of several joined with ``"+"``
(``"y+w"``). Enumerated sites outside the loop that the chain depends on are
summed out as for any other site.

May import: ``jsvi.core``, ``jsvi.infer._contract``, ``jsvi.infer._enum_factors``,
``jsvi.infer._scan_enum``, ``jsvi.infer.traceenum_elbo``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn
from jsvi.core.enumeration import ENUM_DIM_KEY, ENUM_LIVE_KEY, enum
from jsvi.core.handlers import block, seed, substitute, trace
from jsvi.core.scan import SCAN_SUMMED_KEY
from jsvi.core.trace import Site, Trace
from jsvi.errors import ArgumentError, ShapeError, SiteError
from jsvi.infer._contract import (
    Factor,
    PlateInfo,
    Variable,
    contract_to_terms,
    to_factor,
)
from jsvi.infer._enum_factors import (
    _LABEL_BASE,
    _connected,
    _enum_dims,
    _log_density,
    _masked,
    _ordinal,
    _relabel,
)
from jsvi.infer._scan_enum import forward_reducer
from jsvi.infer.traceenum_elbo import guess_max_plate_nesting

__all__ = ["log_likelihood"]


def log_likelihood(
    model: ModelFn,
    posterior_samples: Mapping[str, Any],
    *args: Any,
    **kwargs: Any,
) -> dict[str, Array]:
    """Pointwise log-likelihood of every observed site at each posterior draw.

    Args:
        model: the model; its latent continuous sites take their values from
            ``posterior_samples``, its enumerated sites are summed out.
        posterior_samples: dict site name -> array ``(num_draws, ...)``.
        *args, **kwargs: the model's arguments.

    Returns:
        dict observed site name -> array ``(num_draws, *batch_shape)``, one
        value per element of the site's plates. The observed sites of a
        ``jsvi.scan`` with enumerated sites give one entry (keyed by their
        names joined with ``"+"``) of shape ``(num_draws, *plates)``: one value
        per sequence, the log-likelihood of all its steps, over the plates
        around the ``scan`` call (see the module docstring).

    Raises:
        ArgumentError: ``posterior_samples`` is not a non-empty dict.
        ShapeError: the samples disagree on the number of draws.
        SiteError: a latent site that is not enumerated sits inside a
            ``jsvi.scan`` with enumerated sites.

    Example:
        >>> import jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> @jsvi.config_enumerate
        ... def model(x):
        ...     loc = jsvi.sample("loc", dist.Normal(0.0, 5.0))
        ...     with jsvi.plate("data", x.shape[0]):
        ...         z = jsvi.sample("z", dist.Bernoulli(0.5))
        ...         jsvi.sample("x", dist.Normal(loc * z, 1.0), obs=x)
        >>> ll = jsvi.log_likelihood(model, {"loc": jnp.array([2.0, 3.0])}, jnp.zeros(4))
        >>> ll["x"].shape
        (2, 4)
    """
    if not isinstance(posterior_samples, Mapping) or not posterior_samples:
        raise ArgumentError(
            "log_likelihood: posterior_samples must be a non-empty dict site name -> "
            "array with a leading axis over draws."
        )
    samples = {k: jnp.asarray(v) for k, v in posterior_samples.items()}
    counts = {k: (v.shape[0] if v.ndim else None) for k, v in samples.items()}
    if len(set(counts.values())) != 1 or None in counts.values():
        raise ShapeError(
            f"log_likelihood: every posterior sample needs the same leading (draw) "
            f"axis; got {counts}. Stack the draws along axis 0."
        )
    first = {k: v[0] for k, v in samples.items()}
    key = jax.random.key(0)
    with block():
        nesting = guess_max_plate_nesting(
            key,
            substitute(model, data=first),
            lambda *a, **k: None,
            lambda m: None,
            args,
            kwargs,
        )

    def one(draw: Mapping[str, Array]) -> dict[str, Array]:
        with block():
            tr = trace(
                enum(
                    seed(substitute(model, data=draw), key),
                    max_plate_nesting=nesting,
                    chain_reducer=forward_reducer,
                )
            ).get_trace(*args, **kwargs)
        return _pointwise(tr, nesting)

    return jax.jit(jax.vmap(one))(samples)


def _pointwise(tr: Trace, nesting: int) -> dict[str, Array]:
    enumerated = {n: s for n, s in tr.latent_sites().items() if ENUM_DIM_KEY in s.infer}
    labels = {n: _LABEL_BASE - i for i, n in enumerate(enumerated)}
    latent = [(n, _factor(s, labels, True)) for n, s in enumerated.items()]
    latent = [(n, f) for n, f in latent if any(d in labels.values() for d in f.dims)]
    chains: dict[str, list[str]] = {}  # a scan's summed site -> its observed sites
    for name, site in tr.sample_sites().items():
        if SCAN_SUMMED_KEY not in site.infer:
            continue
        if not site.is_observed:
            raise SiteError(
                f"sample site {name!r}: latent, inside a jsvi.scan whose enumerated "
                "sites log_likelihood sums out; the sequence's value would include "
                "its density, which is no likelihood. Enumerate it too, or sample "
                "it outside the loop."
            )
        chains.setdefault(site.infer[SCAN_SUMMED_KEY], []).append(name)
    out = {}
    for name, site in tr.sample_sites().items():
        if not site.is_observed or SCAN_SUMMED_KEY in site.infer:
            continue
        if name.startswith("_jsvi/"):
            if name not in chains:
                continue
            name = "+".join(chains[name])
        live = _live(site, labels)
        log_prob = _masked(site, _log_density(site, None), False)
        if not _enum_dims(log_prob, live):
            out[name] = log_prob
            continue
        out[name] = _marginal(site, log_prob, latent, enumerated, labels, nesting)
    return out


def _live(site: Site, labels: Mapping[str, int]) -> dict[int, str]:
    return {d: n for d, n in site.infer.get(ENUM_LIVE_KEY, {}).items() if n in labels}


def _factor(site: Site, labels: Mapping[str, int], enumerated: bool) -> Factor:
    dim = site.infer.get(ENUM_DIM_KEY) if enumerated else None
    log_prob = _masked(site, _log_density(site, dim), enumerated)
    mapping = {d: labels[n] for d, n in _live(site, labels).items()}
    return _relabel(to_factor(log_prob), mapping)


def _marginal(
    site: Site,
    log_prob: Array,
    latent: list[tuple[str, Factor]],
    enumerated: Mapping[str, Site],
    labels: Mapping[str, int],
    nesting: int,
) -> Array:
    """``log sum_w p(w) p(x_i | w)`` per element of the site's plates: every
    factor is treated as if it sat in the site's plates, so nothing is
    multiplied across its elements."""
    ordinal = _ordinal(site)
    own = _relabel(
        to_factor(log_prob), {d: labels[n] for d, n in _live(site, labels).items()}
    )
    items = [(own, ordinal, site)] + [(f, ordinal, None) for _, f in latent]
    variables = {labels[n]: Variable(n, ordinal) for n in enumerated}
    component = next(c for c in _connected(items, variables) if c[0][2] is site)
    plates = {
        f.name: PlateInfo(f.dim, f.subsample_size, 1.0)
        for f in site.cond_indep_stack
        if f.vectorized
    }
    terms = contract_to_terms([(f, o) for f, o, _ in component], variables, plates)
    batch = tuple(site.fn.batch_shape)
    rank = min(len(batch), nesting)
    kept = {plates[p].dim for p in ordinal}
    shape = tuple(batch[d] if d in kept else 1 for d in range(-rank, 0))
    total = jnp.zeros(shape)
    for term, _ in terms:
        log = term.log
        for axis in reversed(range(len(term.dims))):
            if term.dims[axis] not in kept or -term.dims[axis] > rank:
                log = jnp.sum(log, axis=axis)
        dims = [d for d in term.dims if d in kept and -d <= rank]
        total = total + log.reshape(
            tuple(log.shape[dims.index(d)] if d in dims else 1 for d in range(-rank, 0))
        )
    return jnp.broadcast_to(
        total, tuple(batch[d] if d in kept else 1 for d in range(-rank, 0))
    )
