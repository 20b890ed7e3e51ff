"""Log-density factors of enumerated traces, shared by ``TraceEnum_ELBO``,
``infer_discrete`` and ``log_likelihood``: a site's log-density over its
enumerated support, its mask and scale as enumeration needs them, and the
labels that name enumerated sites in the contraction.

May import: ``jsvi.core``, ``jsvi.distributions``, ``jsvi.infer._contract``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array
from jsvi.core.enumeration import ENUM_DIM_KEY
from jsvi.core.trace import Site
from jsvi.distributions import Bernoulli, Categorical, ExpandedDistribution
from jsvi.errors import SiteError
from jsvi.infer._contract import Factor, Variable


def _ordinal(site: Site) -> frozenset:
    return frozenset(f.name for f in site.cond_indep_stack if f.vectorized)


def _plate_ratio(site: Site) -> float:
    return math.prod(
        f.size / f.subsample_size for f in site.cond_indep_stack if f.vectorized
    )


def _support_log_prob(fn: Any, dim: int) -> Array | None:
    """``fn.log_prob`` of its whole support laid out along ``dim``, read off the
    normalized logits instead of gathered (no gather, no scatter in the gradient);
    ``None`` for families without this shortcut. A plate-expanded family is read
    off its base and broadcast, as its ``log_prob`` would be."""
    batch_shape = tuple(fn.batch_shape)
    if type(fn) is ExpandedDistribution:
        fn = fn.base_dist
    if type(fn) is Categorical and "_probs" in fn.__dict__:
        # Transpose before the log: the gradient then sums over the plate dims in
        # this layout instead of materializing a transposed copy.
        table = jnp.log(jnp.moveaxis(fn.probs, -1, 0))
    elif type(fn) is Categorical:
        table = jnp.moveaxis(fn.logits, -1, 0)
    elif type(fn) is Bernoulli and "_logits" in fn.__dict__:
        logits = fn.logits
        table = jnp.stack([-jax.nn.softplus(logits), logits - jax.nn.softplus(logits)])
    elif type(fn) is Bernoulli:
        probs = fn.probs
        table = jnp.stack([jnp.log1p(-probs), jnp.log(probs)])
    else:
        return None
    size, base_shape = table.shape[0], table.shape[1:]
    # The batch may reach past ``dim`` (another enumerated site's dim, under
    # ``markov``), with size 1 at ``dim`` itself: the support axis goes there.
    rank = max(-dim, len(batch_shape))
    table = table.reshape((size,) + (1,) * (rank - len(base_shape)) + base_shape)
    table = jnp.moveaxis(jnp.squeeze(table, axis=1 + rank + dim), 0, rank + dim)
    full = [1] * (rank - len(batch_shape)) + list(batch_shape)
    full[dim] = size
    return jnp.broadcast_to(table, tuple(full))


def _log_density(site: Site, dim: int | None) -> Array:
    """Unweighted log-density of a sample site (``dim``: its enumeration dim)."""
    if dim is not None:
        log_prob = _support_log_prob(site.fn, dim)
        if log_prob is not None:
            return log_prob
    return site.fn.log_prob(site.value)


def _weigh(site: Site, log_prob: Array) -> Array:
    """The site's mask and scale applied, as ``site_log_prob`` does."""
    if site.mask is not None:
        log_prob = jnp.where(site.mask, log_prob, 0.0)
    if site.scale is not None:
        log_prob = log_prob * site.scale
    return log_prob


def _masked(site: Site, log_prob: Array, enumerated: bool) -> Array:
    """``log_prob`` with the site's mask applied. A masked-out element of a
    model-enumerated site gets ``-log K`` (K values): summed over its values it
    then contributes ``log 1 = 0``, as if the site were absent. The mask may
    depend on enumerated values; it broadcasts with ``log_prob``."""
    if site.mask is None:
        return log_prob
    fill = 0.0
    dim = site.infer.get(ENUM_DIM_KEY)
    shape = jnp.shape(log_prob)
    if enumerated and dim is not None and len(shape) >= -dim and shape[dim] > 1:
        fill = -math.log(shape[dim])
    return jnp.where(site.mask, log_prob, fill)


# Model-enumerated sites are labelled from here leftwards in the contraction.
_LABEL_BASE = -(1 << 20)


def _is_one(x: Any) -> bool:
    return isinstance(x, (int, float)) and x == 1.0


def _relabel(f: Factor, mapping: Mapping[int, int]) -> Factor:
    """Rename dims of ``f`` (positional enumeration dims -> variable labels),
    axes reordered so the dims ascend, as the contraction expects."""
    dims = [mapping.get(d, d) for d in f.dims]
    order = sorted(range(len(dims)), key=dims.__getitem__)
    log = f.log if order == list(range(len(dims))) else jnp.transpose(f.log, order)
    return Factor(log, tuple(dims[i] for i in order))


def _connected(
    factors: list[tuple[Factor, frozenset, Site]], variables: Mapping[int, Variable]
) -> list[list[tuple[Factor, frozenset, Site]]]:
    """Split factors into groups that share summed-out variables."""
    parent: dict[int, int] = {}

    def find(v: int) -> int:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for f, _, _ in factors:
        own = [d for d in f.dims if d in variables]
        for d in own[1:]:
            parent[find(d)] = find(own[0])
    groups: dict[int, list[tuple[Factor, frozenset, Site]]] = {}
    for item in factors:
        own = [d for d in item[0].dims if d in variables]
        groups.setdefault(find(own[0]), []).append(item)
    return list(groups.values())


def _user_scale(site: Site) -> Any:
    """The site's scale without its plates' subsample ratios (``1.0`` if none)."""
    if site.scale is None:
        return 1.0
    ratio = _plate_ratio(site)
    return site.scale if ratio == 1.0 else site.scale / ratio


def _common_scale(sites: list[Site]) -> Any:
    """The one scalar scale shared by sites summed out together (``None`` for 1).

    The scale multiplies the summed-out log-term, ``s * log sum p``; sites that
    are summed out together must therefore share it.
    """
    first_site, first = sites[0], _user_scale(sites[0])
    for site in sites:
        value = _user_scale(site)
        if jnp.ndim(value) != 0:
            raise SiteError(
                f"sample site {site.name!r}: its scale has shape {jnp.shape(value)}, "
                "but it is summed out together with enumerated sites, whose "
                "summed-out log-term takes one scalar scale. Apply a scalar "
                "handlers.scale to the enumerated site and the sites depending on it."
            )
        if value is first:
            continue
        if isinstance(value, jax.core.Tracer) or isinstance(first, jax.core.Tracer):
            same = False
        else:
            same = bool(np.isclose(float(value), float(first), rtol=1e-6, atol=0.0))
        if not same:
            raise SiteError(
                f"sample sites {first_site.name!r} and {site.name!r}: summed out "
                f"together with enumerated sites, but scaled differently ({first!r} "
                f"vs {value!r}, or traced values that cannot be compared). The scale "
                "multiplies the summed-out term (s * log sum p), so wrap the "
                "enumerated site and every site depending on it in one "
                "handlers.scale."
            )
    return None if _is_one(first) else first


def _enum_dims(x: Array, dims: Mapping[int, Any]) -> list[int]:
    shape = jnp.shape(x)
    return [d for d in dims if len(shape) >= -d and shape[d] > 1]
