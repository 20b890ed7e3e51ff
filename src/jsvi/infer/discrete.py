"""``infer_discrete``: enumerated sites drawn from their exact posterior, or set
to the joint MAP assignment.

The sites are decided one at a time, in the order the model runs them. For the
first undecided site ``z``, the model runs under ``enum`` with the decided
sites fixed, and the plated contraction of ``jsvi.infer._contract`` sums (or,
at temperature 0, maximizes) every other enumerated site out of the joint
density while keeping ``z``'s dim. That gives ``log p(z, x | decided)`` up to a
constant, per element of ``z``'s plates; ``z`` is drawn from it (or set to its
argmax) and fixed. Drawing each site from its conditional given the earlier
ones draws from the joint posterior; maximizing the max-marginal given the
earlier ones gives a joint MAP assignment (Viterbi along a ``markov`` chain).

Cost: one run of the model and one contraction per enumerated site decided
this way. A chain written with ``jsvi.markov`` (one enumerated site per step,
any ``history``, depending on no undecided enumerated site outside it and no
such site depending on it) is decided whole from one run instead, linear in its
length (``jsvi.infer._markov_decide``: forward filtering with backward
sampling, or Viterbi), and so is a chain written with ``jsvi.scan``, inside its
loop (``jsvi.infer._scan_enum.ChainDecider``), once the enumerated sites either
depends on outside the loop are decided. Other chains (several enumerated
sites per step, a later enumerated site depending on the chain) are decided
site by site: exact, but quadratic in their length. It is meant for serving a
fitted model, not for the training loop.

May import: ``jsvi.core``, ``jsvi.infer._contract``, ``jsvi.infer._enum_factors``,
``jsvi.infer._markov_decide``, ``jsvi.infer._scan_enum``,
``jsvi.infer.traceenum_elbo``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, PRNGKey
from jsvi.core.enumeration import ENUM_DIM_KEY, ENUM_LIVE_KEY, enum
from jsvi.core.handlers import block, seed, substitute, trace
from jsvi.core.scan import SCAN_DECIDED_KEY, SCAN_LENGTH_KEY, SCAN_SUMMED_KEY
from jsvi.core.trace import Site, Trace
from jsvi.errors import ArgumentError, SiteError
from jsvi.infer._contract import PlateInfo, Variable, contract_to_terms, to_factor
from jsvi.infer._enum_factors import (
    _LABEL_BASE,
    _enum_dims,
    _log_density,
    _masked,
    _ordinal,
    _relabel,
)
from jsvi.infer._markov_decide import ChainRecorder, chain_of, decide_chain
from jsvi.infer._scan_enum import ChainDecider
from jsvi.infer.traceenum_elbo import guess_max_plate_nesting

__all__ = ["infer_discrete"]


def infer_discrete(
    fn: ModelFn,
    temperature: int = 1,
    rng_key: PRNGKey | None = None,
    first_available_dim: int | None = None,
) -> Callable[..., Any]:
    """``fn`` with its enumerated sites drawn from their exact posterior.

    Sites marked ``infer={"enumerate": "parallel"}`` (see
    ``jsvi.config_enumerate``) are decided given the observations and the
    other sites: at ``temperature=1`` drawn jointly from their posterior, at
    ``temperature=0`` set to the joint MAP assignment (Viterbi on a
    ``markov`` chain). Continuous latent sites should already have values
    (``handlers.substitute(model, data=params)``, or a guide's draws through
    ``handlers.condition``); any left over are drawn from the prior with
    ``rng_key``.

    Args:
        fn: the model.
        temperature: 1 (posterior draws) or 0 (MAP).
        rng_key: the key for the draws (required at temperature 1).
        first_available_dim: the first dim enumeration may use,
            ``-(max_plate_nesting + 1)``; found by running ``fn`` once if None.

    Returns:
        A function with ``fn``'s arguments that runs ``fn`` with the decided
        values and returns what ``fn`` returns; trace it with
        ``handlers.trace`` to read the values. Each decided site has its
        distribution's batch shape (one value per element of its plates).

    Raises:
        ArgumentError: a bad ``temperature``, or no ``rng_key`` at temperature 1.
        SiteError: a site cannot be decided from a contraction that factorizes
            (a plate-local site decided before a global one it depends on).

    Example:
        >>> import jax, jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> @jsvi.config_enumerate
        ... def model(x):
        ...     with jsvi.plate("data", x.shape[0]):
        ...         z = jsvi.sample("z", dist.Bernoulli(0.5))
        ...         jsvi.sample("x", dist.Normal(3.0 * z, 1.0), obs=x)
        >>> x = jnp.array([-0.2, 3.1, 2.8])
        >>> tr = handlers.trace(jsvi.infer_discrete(model, temperature=0)).get_trace(x)
        >>> tr["z"].value.tolist()
        [0, 1, 1]
    """
    if temperature not in (0, 1) or isinstance(temperature, bool):
        raise ArgumentError(
            f"infer_discrete: temperature must be 0 (MAP) or 1 (posterior draws), "
            f"got {temperature!r}."
        )
    if temperature == 1 and rng_key is None:
        raise ArgumentError(
            "infer_discrete: temperature=1 draws from the posterior and needs "
            "rng_key=jax.random.key(...); use temperature=0 for the MAP assignment."
        )
    if first_available_dim is not None and (
        not isinstance(first_available_dim, int) or first_available_dim >= 0
    ):
        raise ArgumentError(
            f"infer_discrete: first_available_dim must be a negative int, got "
            f"{first_available_dim!r}."
        )
    key = jax.random.key(0) if rng_key is None else rng_key
    if isinstance(key, int):
        key = jax.random.key(key)

    def decided(*args: Any, **kwargs: Any) -> Any:
        with block():  # the runs that decide the values stay private
            values = _decide(args, kwargs)
        return seed(substitute(fn, data=values), model_key)(*args, **kwargs)

    model_key, draw_key = jax.random.split(key)

    def _decide(args: tuple, kwargs: dict) -> dict[str, Array]:
        if first_available_dim is None:
            nesting = guess_max_plate_nesting(
                key, fn, lambda *a, **k: None, lambda m: None, args, kwargs
            )
        else:
            nesting = -first_available_dim - 1
        values: dict[str, Array] = {}
        while True:
            chain_key = jax.random.fold_in(draw_key, 1_000_000 + len(values))
            with ChainRecorder() as steps:
                tr = trace(
                    enum(
                        seed(substitute(fn, data=dict(values)), model_key),
                        max_plate_nesting=nesting,
                        chain_reducer=partial(ChainDecider, temperature=temperature,
                                              rng_key=chain_key),
                    )
                ).get_trace(*args, **kwargs)
            for n, s in tr.sample_sites().items():
                if SCAN_DECIDED_KEY in s.infer:
                    values[n] = s.value
            pending = [
                n for n, s in tr.latent_sites().items() if ENUM_DIM_KEY in s.infer
            ]
            if not pending:
                break
            name = pending[0]
            if name in steps:
                chain = chain_of(name, steps, pending)
                path_key = jax.random.fold_in(draw_key, 2_000_000 + len(values))
                path = decide_chain(
                    tr, chain, steps, pending, nesting, temperature, path_key
                )
                if path is not None:
                    for n, index in path.items():
                        values[n] = _value_at(tr[n], index, nesting)
                    if len(path) == len(pending) and not any(
                        SCAN_LENGTH_KEY in s.infer for s in tr.sample_sites().values()
                    ):
                        # nothing else to decide (a jsvi.scan that depends on
                        # the chain is decided in the next run): skip that run
                        break
                    continue
            table = _log_table(tr, name, nesting, maximize=temperature == 0)
            if temperature == 0:
                index = jnp.argmax(table, axis=0)
            else:
                site_key = jax.random.fold_in(draw_key, len(values))
                index = jax.random.categorical(site_key, table, axis=0)
            values[name] = _value_at(tr[name], index, nesting)
        return values

    return decided


def _value_at(site: Site, index: Array, nesting: int) -> Array:
    """The support value at ``index`` (positional over the plate dims), shaped
    as the site's batch shape plus event shape."""
    fn = site.fn
    support = fn.enumerate_support(expand=False)
    size, event = support.shape[0], tuple(fn.event_shape)
    support = support.reshape((size,) + event)
    batch = tuple(fn.batch_shape)
    dim = site.infer[ENUM_DIM_KEY]
    # the site's batch shape without its own (enumerated) dim
    batch = tuple(1 if d == dim else batch[d] for d in range(-len(batch), 0))
    batch = batch[max(0, len(batch) - nesting) :]
    padded = (1,) * (nesting - len(batch)) + batch
    # size-1 dims left of the site's plates (other enumerated sites' dims, or
    # dims only another site's plates use) are not part of its value
    depth = max((-f.dim for f in site.cond_indep_stack if f.vectorized), default=0)
    while len(batch) > depth and batch[0] == 1:
        batch = batch[1:]
    index = jnp.broadcast_to(index, padded).reshape(batch)
    return support[index]


def _log_table(tr: Trace, name: str, nesting: int, maximize: bool) -> Array:
    """``log p(name, observations | fixed sites)`` up to a constant, with every
    other enumerated site summed (or maximized) out: shape ``(K, *plate dims)``,
    positional over the ``nesting`` plate dims (size 1 where ``name`` is not in
    the plate)."""
    enumerated = {n: s for n, s in tr.latent_sites().items() if ENUM_DIM_KEY in s.infer}
    labels = {n: _LABEL_BASE - i for i, n in enumerate(enumerated)}
    target = labels[name]
    variables = {
        labels[n]: Variable(n, _ordinal(s)) for n, s in enumerated.items() if n != name
    }
    free = {target: Variable(name, _ordinal(enumerated[name]))}
    plates: dict[str, PlateInfo] = {}
    factors = []
    for site_name, site in tr.sample_sites().items():
        if SCAN_SUMMED_KEY in site.infer:
            continue  # in its jsvi.scan's summed-out site
        for f in site.cond_indep_stack:
            if f.vectorized:
                plates[f.name] = PlateInfo(f.dim, f.subsample_size, 1.0)
        live = {
            d: n for d, n in site.infer.get(ENUM_LIVE_KEY, {}).items() if n in labels
        }
        dim = (
            enumerated[site_name].infer[ENUM_DIM_KEY]
            if site_name in enumerated
            else None
        )
        log_prob = _masked(site, _log_density(site, dim), site_name in enumerated)
        if not _enum_dims(log_prob, live):
            continue  # constant in every enumerated site
        factor = _relabel(to_factor(log_prob), {d: labels[n] for d, n in live.items()})
        factors.append((factor, _ordinal(site)))
    try:
        terms = contract_to_terms(factors, variables, plates, free, maximize)
    except SiteError as err:
        raise SiteError(
            f"infer_discrete: site {name!r} cannot be decided on its own: {err}"
        ) from err
    size = enumerated[name].value.shape[enumerated[name].infer[ENUM_DIM_KEY]]
    own = {plates[p].dim for p in _ordinal(enumerated[name])}
    table = jnp.zeros((size,) + (1,) * nesting)
    for term, _ in terms:
        if target not in term.dims:
            continue
        log = term.log
        for axis in reversed(range(len(term.dims))):
            d = term.dims[axis]
            if d != target and d not in own:
                log = jnp.sum(log, axis=axis)  # i.i.d. elements given ``name``
        kept = [d for d in term.dims if d == target or d in own]
        shape = [size if target in kept else 1] + [
            log.shape[kept.index(d)] if d in kept else 1 for d in range(-nesting, 0)
        ]
        table = table + log.reshape(shape)
    return table
