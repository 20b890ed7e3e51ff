"""Costs of score-function terms: which log-density terms each non-reparameterized
guide site is weighted by, per plate element.

- ``sum_to_plates``: a term summed down to the vectorized plates it shares with a
  site, so each plate element keeps its own cost;
- ``elementwise_frames``: the plates of a site whose elements may keep their own
  costs (no site outside the plate can carry one element's value to another's);
- ``plate_costs``: ``Trace_ELBO``'s plate-aware costs (all terms, per element);
- ``site_dependencies``: which guide latent values each site's log-density
  depends on, read off the jaxpr of one abstract run of guide and model;
- ``graph_costs``: ``TraceGraph_ELBO``'s costs over true descendants;
- ``downstream_costs``: the execution-order costs, the fallback when
  dependencies cannot be seen.

May import: ``jsvi.core``, ``jsvi.infer.elbo``, ``jsvi.infer.traces``,
``jsvi._typing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.extend.core as jex
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn
from jsvi.core.handlers import replay, seed, substitute, trace
from jsvi.core.runtime import CondIndepStackFrame, Message
from jsvi.core.trace import Site, Trace
from jsvi.infer.elbo import ElboTerms
from jsvi.infer.traces import MODEL_KEY_OFFSET

__all__ = [
    "Dependencies",
    "downstream_costs",
    "elementwise_frames",
    "graph_costs",
    "plate_costs",
    "site_dependencies",
    "sum_to_dims",
    "sum_to_plates",
]

# ---------------------------------------------------------------------------
# plates


def independent(a: Site, b: Site) -> bool:
    """True when ``a`` and ``b`` sit in different iterations of a sequential plate."""
    for fa in a.cond_indep_stack:
        if fa.dim is not None:
            continue
        for fb in b.cond_indep_stack:
            if fb.dim is None and fb.name == fa.name and fb.counter != fa.counter:
                return True
    return False


def vectorized(site: Site) -> tuple[CondIndepStackFrame, ...]:
    """The vectorized plates a site sits in."""
    return tuple(f for f in site.cond_indep_stack if f.vectorized)


def sum_to_dims(cost: Array, keep: Iterable[int], rank: int) -> Array:
    """Sum ``cost`` over every dim but the (negative) dims in ``keep``; return it
    with rank ``rank``, size 1 at the summed dims."""
    keep = set(keep)
    cost = jnp.asarray(cost)
    sum_axes = tuple(axis for axis in range(cost.ndim) if axis - cost.ndim not in keep)
    cost = jnp.sum(cost, axis=sum_axes, keepdims=True)
    if cost.ndim > rank:
        cost = cost.reshape(cost.shape[cost.ndim - rank :])
    return cost.reshape((1,) * (rank - cost.ndim) + cost.shape)


def sum_to_plates(
    cost: Array,
    cost_frames: Sequence[CondIndepStackFrame],
    target_frames: Sequence[CondIndepStackFrame],
) -> Array:
    """Sum a cost term over every dim except the vectorized plates it shares with
    the target site.

    Args:
        cost: a log-density term, shape = its site's batch shape.
        cost_frames: the term's vectorized plates.
        target_frames: the target site's vectorized plates.

    Returns:
        An array of rank ``max(-dim)`` over ``target_frames`` (0 if none), with the
        shared plates' sizes at their dims and 1 elsewhere; it broadcasts against
        the target's batch shape, so each plate element gets its own cost.

    Example:
        >>> import jax.numpy as jnp
        >>> sum_to_plates(jnp.ones((3, 2)), (), ()).shape
        ()
    """
    target_names = {f.name for f in target_frames}
    keep = {f.dim for f in cost_frames if f.name in target_names}
    rank = max((-f.dim for f in target_frames), default=0)
    return sum_to_dims(cost, keep, rank)


def elementwise_frames(
    target: Site, others: Iterable[Site]
) -> tuple[CondIndepStackFrame, ...]:
    """The vectorized plates of ``target`` whose elements keep their own costs.

    A plate declares its elements conditionally independent given what ran before
    it, so one element's draw reaches another element's terms only through a site
    outside the plate that runs later. ``others`` are the sites that may depend on
    ``target`` (later guide sites, or its descendants): a plate that one of them
    lies outside of is summed over, as if the target were not in it.
    """
    frames = vectorized(target)
    for site in others:
        names = {f.name for f in vectorized(site)}
        frames = tuple(f for f in frames if f.name in names)
    return frames


def _cost_to(
    terms: ElboTerms,
    target: Site,
    model: Iterable[str],
    guide: Iterable[str],
    frames: Sequence[CondIndepStackFrame],
) -> Array:
    """Sum of the chosen terms per element of ``frames``, broadcast to every
    vectorized plate of ``target`` (so a per-element baseline always fits)."""
    total = jnp.zeros(())
    for n in model:
        site = terms.model_tr[n]
        total = total + sum_to_plates(terms.log_p[n], vectorized(site), frames)
    for n in guide:
        site = terms.guide_tr[n]
        total = total - sum_to_plates(terms.log_q[n], vectorized(site), frames)
    full = vectorized(target)
    shape = [1] * max((-f.dim for f in full), default=0)
    for f in full:
        shape[f.dim] = f.subsample_size
    return jnp.broadcast_to(total, tuple(shape))


def plate_costs(terms: ElboTerms, sites: Sequence[str]) -> dict[str, Array]:
    """``Trace_ELBO``'s cost of each guide site in ``sites``: the whole
    ``log p - log q``, but per element of the site's vectorized plates.

    A term inside a plate the site shares is kept to its own element; every other
    term is summed and added to all elements (``sum_to_plates``). Plates that a
    later guide site lies outside of are summed over (``elementwise_frames``).
    Sites with the same plates share one cost.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> from jsvi.infer import unconstrained_param_fn
        >>> from jsvi.infer.elbo import elbo_terms
        >>> def model():
        ...     with jsvi.plate("data", 3):
        ...         z = jsvi.sample("z", dist.Bernoulli(0.5))
        ...         jsvi.sample("x", dist.Normal(z, 1.0), obs=0.5)
        >>> def guide():
        ...     with jsvi.plate("data", 3):
        ...         jsvi.sample("z", dist.Bernoulli(0.3))
        >>> terms = elbo_terms(jax.random.key(0), model, guide,
        ...                    unconstrained_param_fn({}), (), {})
        >>> plate_costs(terms, ["z"])["z"].shape  # one cost per element
        (3,)
    """
    order = list(terms.guide_tr.latent_sites())
    model_names, guide_names = list(terms.log_p), list(terms.log_q)
    by_frames: dict[tuple[str, ...], Array] = {}
    costs = {}
    for name in sites:
        later = [terms.guide_tr[n] for n in order[order.index(name) + 1 :]]
        frames = elementwise_frames(terms.guide_tr[name], later)
        full = vectorized(terms.guide_tr[name])
        key = (tuple(f.name for f in frames), tuple(f.name for f in full))
        if key not in by_frames:
            by_frames[key] = _cost_to(
                terms, terms.guide_tr[name], model_names, guide_names, frames
            )
        costs[name] = by_frames[key]
    return costs


# ---------------------------------------------------------------------------
# the dependency graph


class Dependencies(NamedTuple):
    """Which guide latent values each site's log-density reads.

    Attributes:
        guide: guide latent site -> the latent names its ``log q`` depends on
            (itself and its parents in the guide).
        model: model sample site -> the latent names its ``log p`` depends on.
    """

    guide: dict[str, frozenset[str]]
    model: dict[str, frozenset[str]]

    def descendants(self, name: str) -> frozenset[str]:
        """``name`` and every guide site drawn, directly or not, from its value."""
        return _descendants(self, _children(self))[name]


def _children(deps: Dependencies) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {n: [] for n in deps.guide}
    for child, reads in deps.guide.items():
        for parent in reads - {child}:
            children[parent].append(child)
    return children


def _descendants(
    deps: Dependencies, children: Mapping[str, list[str]]
) -> dict[str, frozenset[str]]:
    """Every guide site's descendants (itself included)."""
    found: dict[str, frozenset[str]] = {}
    for name in deps.guide:
        seen, todo = {name}, [name]
        while todo:
            for child in children[todo.pop()]:
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        found[name] = frozenset(seen)
    return found


def _sub_jaxpr(eqn: Any) -> Any:
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if sub is not None:
            return getattr(sub, "jaxpr", sub)
    return None


def _reads(jaxpr: Any, in_deps: Sequence[frozenset]) -> list[frozenset]:
    """Data flow of a jaxpr: for each output, the inputs it is computed from.

    Structural, so never too small: a value that enters an operation reaches all of
    its outputs. Calls into sub-jaxprs (``jit``, custom derivatives) are followed;
    other higher-order primitives (``cond``, ``scan``, ...) count every input.
    """
    env: dict[Any, frozenset] = dict(zip(jaxpr.invars, in_deps, strict=True))
    empty: frozenset = frozenset()

    def read(var: Any) -> frozenset:
        return empty if isinstance(var, jex.Literal) else env.get(var, empty)

    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        sub = _sub_jaxpr(eqn)
        if (
            sub is not None
            and len(sub.invars) == len(ins)
            and len(sub.outvars) == len(eqn.outvars)
        ):
            outs = _reads(sub, ins)
        else:
            outs = [empty.union(*ins)] * len(eqn.outvars)
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def site_dependencies(
    terms: ElboTerms,
    rng_key: Any,
    model: ModelFn,
    guide: ModelFn,
    param_fn: Callable[[Message], Any],
    args: tuple,
    kwargs: Mapping[str, Any],
) -> Dependencies | None:
    """The dependency graph of one run of guide and model, or None if unseen.

    Guide and model run once more with every guide latent value an abstract input
    (``jax.make_jaxpr``; plate indices and params as they were), and the data flow
    of the resulting jaxpr says which inputs each site's log-density is computed
    from. The run is only traced, never executed, so it adds nothing to the
    compiled step. None when the run fails on abstract values (a Python ``if`` on
    a draw, say) or takes another path than ``terms``: callers then fall back on
    execution order. Dependencies carried outside JAX's view (Python state) are
    not seen.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> from jsvi.infer import unconstrained_param_fn
        >>> from jsvi.infer.elbo import elbo_terms
        >>> def model():
        ...     a = jsvi.sample("a", dist.Normal(0.0, 1.0))
        ...     b = jsvi.sample("b", dist.Normal(0.0, 1.0))
        ...     jsvi.sample("x", dist.Normal(b, 1.0), obs=0.5)
        >>> def guide():
        ...     a = jsvi.sample("a", dist.Normal(0.0, 1.0))
        ...     jsvi.sample("b", dist.Normal(a, 1.0))
        >>> key, param_fn = jax.random.key(0), unconstrained_param_fn({})
        >>> terms = elbo_terms(key, model, guide, param_fn, (), {})
        >>> deps = site_dependencies(terms, key, model, guide, param_fn, (), {})
        >>> sorted(deps.guide["b"]), sorted(deps.model["x"]), sorted(deps.descendants("a"))
        (['a', 'b'], ['b'], ['a', 'b'])
    """
    latent = terms.guide_tr.latent_sites()
    names = list(latent)
    model_names = list(terms.model_tr.sample_sites())
    plates = {n: s.value for n, s in terms.guide_tr.items() if s.kind == "plate"}
    specs = [jax.ShapeDtypeStruct(jnp.shape(s.value), jnp.result_type(s.value))
             for s in latent.values()]

    def run(values: list) -> tuple[list, list]:
        data = {**plates, **dict(zip(names, values, strict=True))}
        guide_tr = trace(
            substitute(seed(substitute(guide, substitute_fn=param_fn), rng_key), data=data)
        ).get_trace(*args, **kwargs)
        model_key = jax.random.fold_in(rng_key, MODEL_KEY_OFFSET)
        model_tr = trace(
            replay(seed(substitute(model, substitute_fn=param_fn), model_key), guide_tr)
        ).get_trace(*args, **kwargs)
        if list(guide_tr.latent_sites()) != names or (
            list(model_tr.sample_sites()) != model_names
        ):
            raise _OtherPath
        return _log_densities(guide_tr, True), _log_densities(model_tr, False)

    try:
        closed = jax.make_jaxpr(run)(specs)
    except Exception:  # noqa: BLE001 - any failure: dependencies cannot be seen
        return None
    inputs = [frozenset([n]) for n in names]
    reads = _reads(closed.jaxpr, inputs)
    guide_reads = dict(zip(names, reads[: len(names)], strict=True))
    for n in names:
        guide_reads[n] = guide_reads[n] | {n}
    model_reads = dict(zip(model_names, reads[len(names) :], strict=True))
    return Dependencies(guide_reads, model_reads)


class _OtherPath(Exception):
    """The abstract run took another path than the traced one."""


def _log_densities(tr: Trace, latent_only: bool) -> list[Array]:
    sites = tr.latent_sites() if latent_only else tr.sample_sites()
    return [jnp.sum(s.fn.log_prob(s.value)) for s in sites.values()]


def graph_costs(
    terms: ElboTerms, sites: Sequence[str], deps: Dependencies
) -> dict[str, Array]:
    """``TraceGraph_ELBO``'s cost of each guide site in ``sites``: the terms that
    read the site's value or a descendant's.

    For guide site ``z_i`` with descendants ``D`` (itself included), the cost holds
    ``-log q(z_j)`` for every guide site whose density reads a value in ``D`` and
    ``log p`` of every model site whose density does; per element of the
    vectorized plates that ``z_i`` and all of ``D`` share (``elementwise_frames``).
    Costs carry plate/``scale`` factors.
    """
    descendants = _descendants(deps, _children(deps))
    costs = {}
    for name in sites:
        nodes = descendants[name]
        frames = elementwise_frames(
            terms.guide_tr[name], (terms.guide_tr[n] for n in nodes)
        )
        model = [n for n, reads in deps.model.items() if reads & nodes]
        guide = [n for n, reads in deps.guide.items() if reads & nodes]
        costs[name] = _cost_to(terms, terms.guide_tr[name], model, guide, frames)
    return costs


def downstream_costs(terms: ElboTerms, sites: Sequence[str]) -> dict[str, Array]:
    """The execution-order downstream cost of each guide site in ``sites``.

    For guide site ``z_i`` the cost holds ``log p(z_j) - log q(z_j)`` for every guide
    site ``z_j`` run at or after ``z_i`` (guide order), plus ``log p`` of every
    other model site run after one of those in the model; sites in other
    iterations of a sequential plate are excluded, and vectorized plates keep one
    cost per element (``sum_to_plates``). Costs carry plate/``scale`` factors.
    ``TraceGraph_ELBO`` uses it only where ``site_dependencies`` sees nothing.
    """
    guide_sites = list(terms.guide_tr.latent_sites().items())
    model_sites = list(terms.model_tr.sample_sites().items())
    model_pos = {name: k for k, (name, _) in enumerate(model_sites)}
    costs = {}
    for name in sites:
        target = terms.guide_tr[name]
        frames = vectorized(target)
        start = next(k for k, (n, _) in enumerate(guide_sites) if n == name)
        downstream = [
            n
            for n, s in guide_sites[start:]
            if n == name or not independent(target, s)
        ]
        total = jnp.zeros(())
        for n in downstream:
            g_site, m_site = terms.guide_tr[n], terms.model_tr[n]
            total = total + sum_to_plates(terms.log_p[n], vectorized(m_site), frames)
            total = total - sum_to_plates(terms.log_q[n], vectorized(g_site), frames)
        first = min(model_pos[n] for n in downstream)
        chosen = set(downstream)
        for n, m_site in model_sites[first + 1 :]:
            if n in chosen:
                continue
            parents = [
                terms.model_tr[d] for d in downstream if model_pos[d] < model_pos[n]
            ]
            if any(not independent(p, m_site) for p in parents):
                total = total + sum_to_plates(terms.log_p[n], vectorized(m_site), frames)
        costs[name] = total
    return costs
