"""``TraceEnum_ELBO``: the ELBO with discrete latents summed out (model side) or
averaged exactly (guide side) by parallel enumeration.

May import: ``jsvi.infer.elbo``, ``jsvi.infer._contract``, ``jsvi.core``
(``core.enumeration`` included).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, PRNGKey, PyTree, shape_of
from jsvi.core.enumeration import DEFAULT_MAX_ENUM_SIZE, ENUM_DIM_KEY, enum
from jsvi.core.handlers import replay, seed, substitute, trace
from jsvi.core.runtime import Message
from jsvi.core.trace import Site, Trace
from jsvi.distributions import Bernoulli, Categorical, ExpandedDistribution
from jsvi.errors import ArgumentError, ShapeError, SiteError
from jsvi.infer._contract import (
    PlateInfo,
    Variable,
    contract_to_terms,
    to_factor,
    to_positional,
)
from jsvi.infer.elbo import (
    ELBO,
    is_reparameterized,
    score_log_prob,
    score_term,
    value_preserving,
)
from jsvi.infer.traces import MODEL_KEY_OFFSET, check_model_guide, feasible_draws

__all__ = ["TraceEnum_ELBO", "guess_max_plate_nesting"]

ParamFn = Callable[[Message], Any]


def _ordinal(site: Site) -> frozenset:
    return frozenset(f.name for f in site.cond_indep_stack if f.vectorized)


def _plate_ratio(site: Site) -> float:
    return math.prod(
        f.size / f.subsample_size for f in site.cond_indep_stack if f.vectorized
    )


def guess_max_plate_nesting(
    rng_key: PRNGKey,
    model: ModelFn,
    guide: ModelFn,
    param_fn: ParamFn,
    args: tuple,
    kwargs: Mapping[str, Any],
) -> int:
    """How many batch dims model and guide use, found by running each once.

    Both run with latent sites at a fixed point of their support (no draws), so the
    count costs only tracing. It is the larger of the deepest vectorized plate dim
    and the largest batch rank of any sample site.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     with jsvi.plate("a", 2), jsvi.plate("b", 3):
        ...         jsvi.sample("x", dist.Normal(0.0, 1.0), obs=0.0)
        >>> guess_max_plate_nesting(jax.random.key(0), model, model, lambda m: None, (), {})
        2
    """
    depth = 0
    for fn in (guide, model):
        tr = trace(
            seed(substitute(feasible_draws(fn), substitute_fn=param_fn), rng_key)
        ).get_trace(*args, **kwargs)
        for site in tr.sample_sites().values():
            depth = max(depth, len(tuple(site.fn.batch_shape)))
            for f in site.cond_indep_stack:
                if f.vectorized:
                    depth = max(depth, -f.dim)
    return depth


def _check_plate_depth(
    nesting: int,
    model: ModelFn,
    guide: ModelFn,
    param_fn: ParamFn,
    args: tuple,
    kwargs: Mapping[str, Any],
) -> None:
    """Raise if a site of model or guide sits in a plate beyond ``nesting`` dims."""
    for fn in (guide, model):
        tr = trace(
            seed(substitute(feasible_draws(fn), substitute_fn=param_fn), 0)
        ).get_trace(*args, **kwargs)
        for name, site in tr.sample_sites().items():
            for f in site.cond_indep_stack:
                if f.vectorized and -f.dim > nesting:
                    raise ShapeError(
                        f"sample site {name!r}: sits in plate {f.name!r} at dim {f.dim}, "
                        f"but max_plate_nesting={nesting} reserves only dims -1 .. "
                        f"{-nesting} for plates, so enumeration dims collide with it. "
                        f"Pass max_plate_nesting={-f.dim} (or leave it unset to find it)."
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
    table = table.reshape((size,) + (1,) * (-dim - 1 - len(base_shape)) + base_shape)
    full = (size,) + (1,) * (-dim - 1 - len(batch_shape)) + batch_shape
    return jnp.broadcast_to(table, full)


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


class _Cost(NamedTuple):
    """A term of the ELBO: a positional log-density (scale applied) and its plates."""

    value: Array
    ordinal: frozenset
    name: str


def _enum_dims(x: Array, dims: Mapping[int, Any]) -> list[int]:
    shape = jnp.shape(x)
    return [d for d in dims if len(shape) >= -d and shape[d] > 1]


def _check_enum_model_guide(
    model_tr: Trace, guide_tr: Trace, guide_enum: Mapping[str, int]
) -> None:
    for name in guide_enum:
        m_site = model_tr.sample_sites().get(name)
        if m_site is not None and m_site.is_observed:
            raise SiteError(
                f"guide site {name!r}: enumerated in the guide, but the model observes "
                "it. A guide describes latent variables only: remove the site (or its "
                "'enumerate' option) from the guide."
            )
    check_model_guide(model_tr, guide_tr, check_shapes=not guide_enum)


@dataclasses.dataclass(frozen=True)
class TraceEnum_ELBO(ELBO):
    r"""The ELBO with enumerated discrete sites handled exactly.

    Sites marked ``infer={"enumerate": "parallel"}`` (see
    ``jsvi.config_enumerate``) get their whole support as value, along a batch dim
    left of the ``max_plate_nesting`` plate dims, so one run evaluates every
    assignment. Let :math:`w` be the model's enumerated sites (absent from the
    guide), :math:`y` the guide's enumerated sites and :math:`z` the sites the
    guide samples. Each particle draws :math:`z \sim q_\phi` (one draw per value of
    the :math:`y` it depends on) and computes

    .. math::
        \widehat{\rm ELBO} = \sum_{y} q_\phi(y)\Big[\log \sum_{w}
        p_\theta(x, y, z, w) - \log q_\phi(y, z)\Big].

    The sum over :math:`w` is a plated sum-product in log space
    (``jsvi.infer._contract``): a variable inside a plate is summed per element,
    plates are multiplied out deepest first, subsample ratios apply when a plate
    is multiplied out. The average over :math:`y` weights each term by the
    probabilities under :math:`q_\phi` of the enumerated guide sites it depends on
    (and their enumerated ancestors). Both are exact, so with an empty guide and
    every latent enumerated, :math:`\widehat{\rm ELBO} = \log p_\theta(x)` and its
    gradient is the exact gradient of the log-likelihood.

    Gradients: :math:`\widehat{\rm ELBO}` is differentiated as it stands (pathwise
    through reparameterized :math:`z`, exactly through the weights
    :math:`q_\phi(y)` and the sums over :math:`w`). Each sampled,
    non-reparameterized guide site :math:`z_i` adds, as in ``Trace_ELBO``,
    :math:`\log q_\phi(z_i)\,\overline{\widehat{\rm ELBO}} -
    \overline{\log q_\phi(z_i)\,\widehat{\rm ELBO}}` (bars are
    ``stop_gradient``): zero in value, with gradient
    :math:`\widehat{\rm ELBO}\,\nabla_\phi \log q_\phi(z_i)`. The only other
    ``stop_gradient`` is on the maxima subtracted inside the contraction, which
    cancel exactly. Without enumerated sites the estimator is ``Trace_ELBO``'s,
    value and gradient.

    Args:
        num_particles: draws averaged per estimate.
        vectorize_particles: ``vmap`` over particles (True) or ``lax.map`` (False).
        max_plate_nesting: how many batch dims plates use; enumeration dims go to
            their left. Default: found by running model and guide once at trace
            time (the deepest plate, or the largest batch rank of a site).
        max_enum_size: the largest ``support size * prod(batch_shape)`` one
            enumerated site may have.

    References:
        Obermeyer et al. (2019), Tensor Variable Elimination for Plated Factor
        Graphs. Pyro's "Inference with Discrete Latent Variables" tutorial.

    Example:
        >>> import jax, jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> @jsvi.config_enumerate
        ... def model(x):
        ...     with jsvi.plate("data", x.shape[0]):
        ...         z = jsvi.sample("z", dist.Bernoulli(0.3))
        ...         jsvi.sample("x", dist.Normal(2.0 * z, 1.0), obs=x)
        >>> x = jnp.array([0.1, 1.9])
        >>> loss = TraceEnum_ELBO().loss(jax.random.key(0), {}, model, lambda x: None, x)
        >>> exact = -jnp.sum(jnp.log(0.7 * jnp.exp(dist.Normal(0., 1.).log_prob(x))
        ...                          + 0.3 * jnp.exp(dist.Normal(2., 1.).log_prob(x))))
        >>> bool(jnp.allclose(loss, exact))
        True
    """

    max_plate_nesting: int | None = None
    max_enum_size: int = DEFAULT_MAX_ENUM_SIZE

    def __post_init__(self) -> None:
        super().__post_init__()
        n = self.max_plate_nesting
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ArgumentError(
                f"TraceEnum_ELBO: max_plate_nesting must be None or an int >= 0, got "
                f"{n!r}."
            )
        s = self.max_enum_size
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ArgumentError(
                f"TraceEnum_ELBO: max_enum_size must be an int >= 1, got {s!r}."
            )

    def check_traces(self, model_tr: Trace, guide_tr: Trace) -> None:
        """As ``ELBO.check_traces``, but model sites marked for enumeration may be
        absent from the guide (they are summed out)."""
        self._warn_unused_baselines(guide_tr)

    def loss_and_aux(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        guide: ModelFn,
        elbo_state: PyTree,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> tuple[Array, tuple[Array, PyTree]]:
        """As ``ELBO.loss_and_aux``; finds ``max_plate_nesting`` first if unset
        (once for all particles)."""
        if self.max_plate_nesting is None:
            resolved = self._resolve(param_fn, model, guide, args, kwargs)
            return resolved.loss_and_aux(
                rng_key, param_fn, model, guide, elbo_state, args, kwargs
            )
        return super().loss_and_aux(
            rng_key, param_fn, model, guide, elbo_state, args, kwargs
        )

    def _resolve(
        self,
        param_fn: ParamFn,
        model: ModelFn,
        guide: ModelFn,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> TraceEnum_ELBO:
        depth = guess_max_plate_nesting(
            jax.random.key(0), model, guide, param_fn, args, kwargs
        )
        return dataclasses.replace(self, max_plate_nesting=depth)

    def _traces(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        guide: ModelFn,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> tuple[Trace, Trace]:
        try:
            return self._run(rng_key, param_fn, model, guide, args, kwargs)
        except ShapeError:
            # A plate beyond max_plate_nesting collides with an enumeration dim,
            # and the plate's own shape check fires first: name the real cause.
            _check_plate_depth(
                int(self.max_plate_nesting or 0), model, guide, param_fn, args, kwargs
            )
            raise

    def _run(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        guide: ModelFn,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> tuple[Trace, Trace]:
        nesting = int(self.max_plate_nesting or 0)  # resolved by the caller
        guide_tr = trace(
            enum(
                seed(substitute(guide, substitute_fn=param_fn), rng_key),
                max_plate_nesting=nesting,
                max_enum_size=self.max_enum_size,
            )
        ).get_trace(*args, **kwargs)
        used = [
            s.infer[ENUM_DIM_KEY]
            for s in guide_tr.latent_sites().values()
            if ENUM_DIM_KEY in s.infer
        ]
        first = min(used) - 1 if used else -(nesting + 1)
        model_key = jax.random.fold_in(rng_key, MODEL_KEY_OFFSET)
        model_tr = trace(
            enum(
                replay(
                    seed(substitute(model, substitute_fn=param_fn), model_key), guide_tr
                ),
                first_available_dim=first,
                max_plate_nesting=nesting,
                max_enum_size=self.max_enum_size,
            )
        ).get_trace(*args, **kwargs)
        return model_tr, guide_tr

    def particle(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        guide: ModelFn,
        elbo_state: PyTree,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> tuple[Array, Array, PyTree]:
        if self.max_plate_nesting is None:
            resolved = self._resolve(param_fn, model, guide, args, kwargs)
            return resolved.particle(
                rng_key, param_fn, model, guide, elbo_state, args, kwargs
            )
        del elbo_state
        model_tr, guide_tr = self._traces(rng_key, param_fn, model, guide, args, kwargs)
        guide_latent = guide_tr.latent_sites()
        guide_enum = {
            n: s.infer[ENUM_DIM_KEY]
            for n, s in guide_latent.items()
            if ENUM_DIM_KEY in s.infer
        }
        _check_enum_model_guide(model_tr, guide_tr, guide_enum)
        model_costs = self._model_costs(model_tr, guide_tr, guide_enum)
        guide_costs, weights = [], {}
        for n, s in guide_latent.items():
            log_q = _log_density(s, guide_enum.get(n))
            guide_costs.append(_Cost(_weigh(s, log_q), _ordinal(s), n))
            if n in guide_enum:
                weights[guide_enum[n]] = (jnp.exp(log_q), _ordinal(s), n)
        elbo = jnp.zeros(())
        for cost in model_costs:
            elbo = elbo + _expectation(cost, weights)
        for cost in guide_costs:
            elbo = elbo - _expectation(cost, weights)
        surrogate = elbo
        for name, site in guide_latent.items():
            if name not in guide_enum and not is_reparameterized(site):
                surrogate = surrogate + score_term(jnp.sum(score_log_prob(site)), elbo)
        return value_preserving(surrogate, elbo), elbo, ()

    def _model_costs(
        self, model_tr: Trace, guide_tr: Trace, guide_enum: Mapping[str, int]
    ) -> list[_Cost]:
        """The model's log-density as plated log-terms, enumerated sites summed out."""
        sites = model_tr.sample_sites()
        model_enum = {
            s.infer[ENUM_DIM_KEY]: Variable(n, _ordinal(s))
            for n, s in model_tr.latent_sites().items()
            if ENUM_DIM_KEY in s.infer
        }
        dims = {**guide_enum, **{v.name: d for d, v in model_enum.items()}}
        if not model_enum:
            return [
                _Cost(_weigh(s, _log_density(s, dims.get(n))), _ordinal(s), n)
                for n, s in sites.items()
            ]
        free = {
            dim: Variable(n, _ordinal(guide_tr[n])) for n, dim in guide_enum.items()
        }
        plates: dict[str, PlateInfo] = {}
        for tr in (model_tr, guide_tr):
            for s in tr.sample_sites().values():
                for f in s.cond_indep_stack:
                    if f.vectorized:
                        plates[f.name] = PlateInfo(
                            f.dim, f.subsample_size, f.size / f.subsample_size
                        )
        costs, factors = [], []
        for name, site in sites.items():
            log_prob = _log_density(site, dims.get(name))
            if not _enum_dims(log_prob, model_enum):
                costs.append(_Cost(_weigh(site, log_prob), _ordinal(site), name))
                continue
            if site.mask is not None:
                log_prob = jnp.where(site.mask, log_prob, 0.0)
            if site.scale is not None:
                log_prob = log_prob * (site.scale / _plate_ratio(site))
            self._check_dims(site, log_prob, set(model_enum) | set(free))
            factors.append((to_factor(log_prob), _ordinal(site)))
        rank = int(self.max_plate_nesting or 0) + len(model_enum) + len(free)
        for term, ordinal in contract_to_terms(factors, model_enum, plates, free):
            value = to_positional(term, rank)
            full = list(value.shape)
            ratio = 1.0
            for p in ordinal:
                full[plates[p].dim] = plates[p].subsample_size
                ratio *= plates[p].ratio
            value = jnp.broadcast_to(value, tuple(full))
            value = value * ratio if ratio != 1.0 else value
            costs.append(_Cost(value, ordinal, "(enumerated part of the model)"))
        return costs

    def _check_dims(self, site: Site, log_prob: Array, enum_dims: set[int]) -> None:
        """A site in a contraction may have size > 1 only at its plates' and
        enumeration dims."""
        plate_dims = {f.dim for f in site.cond_indep_stack if f.vectorized}
        shape = shape_of(log_prob)
        for d in range(-len(shape), 0):
            if shape[d] == 1 or d in plate_dims or d in enum_dims:
                continue
            where = (
                "a plate dim"
                if -d <= int(self.max_plate_nesting or 0)
                else "an enumeration dim"
            )
            raise ShapeError(
                f"sample site {site.name!r}: its log-density has shape {shape}, size "
                f"{shape[d]} at dim {d} ({where} that no plate of this site or "
                "enumerated site accounts for). Sites that depend on enumerated sites "
                "must declare every batch dim with a plate: wrap the site in "
                "jsvi.plate(...), or move the dim into the event with .to_event(n)."
            )


def _expectation(
    cost: _Cost, weights: Mapping[int, tuple[Array, frozenset, str]]
) -> Array:
    """Sum of ``cost`` with its guide-enumerated dims averaged under q."""
    present = _enum_dims(cost.value, weights)
    if not present:
        return jnp.sum(cost.value)
    chosen: dict[int, tuple[Array, frozenset, str]] = {}
    todo = list(present)
    while todo:
        d = todo.pop()
        if d in chosen:
            continue
        chosen[d] = weights[d]
        todo.extend(e for e in _enum_dims(weights[d][0], weights) if e not in chosen)
    total = cost.value
    for probs, ordinal, name in chosen.values():
        if not ordinal <= cost.ordinal:
            raise SiteError(
                f"guide site {name!r}: enumerated in the guide inside plates "
                f"{sorted(ordinal)}, but site {cost.name!r} (plates "
                f"{sorted(cost.ordinal)}) depends on it outside them; its expectation "
                f"would not factorize. Sample {name!r} in the guide instead of "
                "enumerating it, or move the dependent site into the same plates."
            )
        total = total * probs
    return jnp.sum(total)
