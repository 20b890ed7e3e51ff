"""``TraceEnum_ELBO``: the ELBO with discrete latents summed out (model side) or
averaged exactly (guide side) by parallel enumeration.

May import: ``jsvi.infer.elbo``, ``jsvi.infer.costs``, ``jsvi.infer.traces``,
``jsvi.infer._contract``, ``jsvi.infer._enum_factors``, ``jsvi.infer._enum_checks``,
``jsvi.infer._scan_enum``, ``jsvi.infer.checks``, ``jsvi.core``
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
from jsvi.core.enumeration import (
    DEFAULT_MAX_ENUM_SIZE,
    ENUM_DIM_KEY,
    ENUM_LIVE_KEY,
    SEQUENTIAL_SIZE_KEY,
    enum,
)
from jsvi.core.handlers import replay, seed, substitute, trace
from jsvi.core.runtime import Message
from jsvi.core.scan import SCAN_SUMMED_KEY
from jsvi.core.trace import Site, Trace
from jsvi.errors import ArgumentError, ShapeError, SiteError
from jsvi.infer._contract import (
    Factor,
    PlateInfo,
    Variable,
    contract_to_terms,
    to_factor,
    to_positional,
)
from jsvi.infer._enum_checks import check_distinct_guide_dims, check_enum_model_guide
from jsvi.infer._enum_factors import (
    _LABEL_BASE,
    _common_scale,
    _connected,
    _enum_dims,
    _log_density,
    _masked,
    _ordinal,
    _relabel,
    _weigh,
)
from jsvi.infer._scan_enum import forward_reducer
from jsvi.infer.checks import warn_if_nothing_enumerated
from jsvi.infer.costs import elementwise_frames, sum_to_dims
from jsvi.infer.elbo import (
    ELBO,
    is_reparameterized,
    score_log_prob,
    score_term,
    value_preserving,
)
from jsvi.infer.traces import (
    MODEL_KEY_OFFSET,
    feasible_draws,
    located,
)

__all__ = ["TraceEnum_ELBO", "guess_max_plate_nesting"]

ParamFn = Callable[[Message], Any]


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


class _Cost(NamedTuple):
    """A term of the ELBO: a positional log-density (scale applied) and its plates."""

    value: Array
    ordinal: frozenset
    name: str


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

    Scale and mask: a ``handlers.scale`` factor :math:`s` around sites that are
    summed out together multiplies the summed-out term,
    :math:`s \log \sum_w p`, so those sites must share one scalar scale (an
    error says otherwise). A masked-out element of a model-enumerated site counts
    as absent: its log-density becomes :math:`-\log K` for each of its
    :math:`K` values, which sums to :math:`0`. A mask may depend on enumerated
    values. A guide-drawn value of a model site whose distribution depends on an
    enumerated site broadcasts against the enumeration dims.

    Gradients: :math:`\widehat{\rm ELBO}` is differentiated as it stands (pathwise
    through reparameterized :math:`z`, exactly through the weights
    :math:`q_\phi(y)` and the sums over :math:`w`). Each sampled,
    non-reparameterized guide site :math:`z_i` adds, as in ``Trace_ELBO``,
    :math:`\sum \log q_\phi(z_i)\,\overline{c_i} -
    \overline{\log q_\phi(z_i)\,c_i}` (bars are ``stop_gradient``): zero in
    value, with gradient :math:`c_i\,\nabla_\phi \log q_\phi(z_i)`, and the
    zero-mean direct gradient of :math:`-\log q_\phi(z_i)` at the fixed draw is
    cancelled, as in ``Trace_ELBO``. The cost
    :math:`c_i` is :math:`\widehat{\rm ELBO}`'s terms kept plate-aware as in
    ``Trace_ELBO``: each element of a vectorized plate gets the terms (summed-out
    ones included) of its own element plus every term outside the plate; the
    whole :math:`\widehat{\rm ELBO}` when :math:`z_i` depends on an enumerated
    guide site or a guide site outside the plate runs after it. The only other
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
        absent from the guide (they are summed out). Warns
        (``EnumerationWarning``) when no site is marked for enumeration."""
        self._warn_unused_baselines(guide_tr)
        warn_if_nothing_enumerated(model_tr, guide_tr)

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
                located(seed(substitute(guide, substitute_fn=param_fn), rng_key), "guide"),
                max_plate_nesting=nesting,
                max_enum_size=self.max_enum_size,
            )
        ).get_trace(*args, **kwargs)
        model_tr = self._run_model(rng_key, param_fn, model, guide_tr, args, kwargs)
        return model_tr, guide_tr

    def _run_model(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        guide_tr: Trace,
        args: tuple,
        kwargs: Mapping[str, Any],
        sequential: Mapping[str, Array] | None = None,
    ) -> Trace:
        nesting = int(self.max_plate_nesting or 0)
        used = [
            s.infer[ENUM_DIM_KEY]
            for s in guide_tr.latent_sites().values()
            if ENUM_DIM_KEY in s.infer
        ]
        first = min(used) - 1 if used else -(nesting + 1)
        model_key = jax.random.fold_in(rng_key, MODEL_KEY_OFFSET)
        return trace(
            enum(
                located(
                    replay(
                        seed(substitute(model, substitute_fn=param_fn), model_key),
                        guide_tr,
                    ),
                    "model",
                ),
                first_available_dim=first,
                max_plate_nesting=nesting,
                max_enum_size=self.max_enum_size,
                chain_reducer=forward_reducer,
                sequential_values=dict(sequential or {}),
            )
        ).get_trace(*args, **kwargs)

    def _sequential_total(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        model_tr: Trace,
        guide_tr: Trace,
        guide_enum: Mapping[str, int],
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> Array | None:
        """``log sum_a exp(model terms at a)`` over the joint values ``a`` of the
        sequential sites, one value at a time (``lax.map``); None without any."""
        sizes = {
            n: s.infer[SEQUENTIAL_SIZE_KEY]
            for n, s in model_tr.latent_sites().items()
            if SEQUENTIAL_SIZE_KEY in s.infer
        }
        if not sizes:
            return None
        for name in sizes:
            plates = sorted(_ordinal(model_tr[name]))
            if plates or guide_enum:
                raise SiteError(
                    f"sample site {name!r}: enumerated 'sequential' "
                    + (f"inside plates {plates}" if plates else "with guide-side "
                       f"enumeration ({sorted(guide_enum)})")
                    + ". Sequential enumeration sums whole model runs, one value of "
                    "a global site at a time: mark this site 'parallel', or move it "
                    "out of the plates."
                )

        def one(flat: Array) -> Array:
            index = jnp.unravel_index(flat, tuple(sizes.values()))
            values = dict(zip(sizes, index))
            tr = self._run_model(rng_key, param_fn, model, guide_tr, args, kwargs, values)
            costs = self._model_costs(tr, guide_tr, {})
            return sum((jnp.sum(c.value) for c in costs), jnp.zeros(()))

        total = math.prod(sizes.values())
        return jax.nn.logsumexp(jax.lax.map(one, jnp.arange(total)))

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
        check_distinct_guide_dims(guide_enum)
        check_enum_model_guide(
            model_tr, guide_tr, guide_enum, int(self.max_plate_nesting or 0)
        )
        sequential = self._sequential_total(
            rng_key, param_fn, model, model_tr, guide_tr, guide_enum, args, kwargs
        )
        model_costs = (
            self._model_costs(model_tr, guide_tr, guide_enum)
            if sequential is None
            else [_Cost(sequential, frozenset(), "(sequential sites summed out)")]
        )
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
        order = list(guide_latent)
        for name, site in guide_latent.items():
            if name not in guide_enum and not is_reparameterized(site):
                later = [guide_latent[n] for n in order[order.index(name) + 1 :]]
                cost = _plate_score_cost(
                    site, later, model_costs, guide_costs, weights, elbo
                )
                log_q = score_log_prob(site)
                surrogate = surrogate + jnp.sum(score_term(log_q, cost))
                if not _enum_dims(log_q, weights):  # as Trace_ELBO: drop the
                    # zero-mean direct gradient of -log q at the fixed draw
                    direct = jnp.sum(_weigh(site, log_q))
                    surrogate = surrogate + direct - jax.lax.stop_gradient(direct)
        return value_preserving(surrogate, elbo), elbo, ()

    def _model_costs(
        self, model_tr: Trace, guide_tr: Trace, guide_enum: Mapping[str, int]
    ) -> list[_Cost]:
        """The model's log-density as plated log-terms, enumerated sites summed out."""
        sites = {
            n: s
            for n, s in model_tr.sample_sites().items()
            if SCAN_SUMMED_KEY not in s.infer  # in the scan's summed-out site
        }
        enumerated = {
            n: s for n, s in model_tr.latent_sites().items() if ENUM_DIM_KEY in s.infer
        }
        dims = {
            **guide_enum,
            **{n: s.infer[ENUM_DIM_KEY] for n, s in enumerated.items()},
        }
        if not enumerated:
            return [
                _Cost(_weigh(s, _log_density(s, dims.get(n))), _ordinal(s), n)
                for n, s in sites.items()
            ]
        # A model-enumerated site is named in the contraction by a label of its
        # own, far left of every positional dim: under ``markov`` one dim stands
        # for several sites in turn.
        labels = {n: _LABEL_BASE - i for i, n in enumerate(enumerated)}
        variables = {labels[n]: Variable(n, _ordinal(s)) for n, s in enumerated.items()}
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
        costs: list[_Cost] = []
        factors: list[tuple[Factor, frozenset, Site]] = []
        for name, site in sites.items():
            live = {
                d: n
                for d, n in site.infer.get(ENUM_LIVE_KEY, {}).items()
                if n in enumerated
            }
            log_prob = _masked(
                site, _log_density(site, dims.get(name)), name in enumerated
            )
            if not _enum_dims(log_prob, live):
                scaled = log_prob if site.scale is None else log_prob * site.scale
                costs.append(_Cost(scaled, _ordinal(site), name))
                continue
            self._check_dims(site, log_prob, set(live) | set(free))
            factor = _relabel(
                to_factor(log_prob), {d: labels[n] for d, n in live.items()}
            )
            factors.append((factor, _ordinal(site), site))
        rank = max([int(self.max_plate_nesting or 0)] + [-d for d in free])
        for component in _connected(factors, variables):
            scale = _common_scale([site for _, _, site in component])
            pairs = [(f, o) for f, o, _ in component]
            for term, ordinal in contract_to_terms(pairs, variables, plates, free):
                value = to_positional(term, rank)
                full = list(value.shape)
                ratio = 1.0
                for p in ordinal:
                    full[plates[p].dim] = plates[p].subsample_size
                    ratio *= plates[p].ratio
                value = jnp.broadcast_to(value, tuple(full))
                value = value * ratio if ratio != 1.0 else value
                value = value * scale if scale is not None else value
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


def _plate_score_cost(
    site: Site,
    later: list[Site],
    model_costs: list[_Cost],
    guide_costs: list[_Cost],
    weights: Mapping[int, tuple[Array, frozenset, str]],
    elbo: Array,
) -> Array:
    """A sampled guide site's score-function cost, plate-aware as in ``Trace_ELBO``
    (``costs.plate_costs``): each term kept to its own element of the plates it
    shares with the site; the whole ``elbo`` where no plate qualifies or the site
    depends on a guide-enumerated site."""
    frames = elementwise_frames(site, later)
    if not frames or _enum_dims(score_log_prob(site), weights):
        return elbo
    dims = {f.name: f.dim for f in frames}
    rank = max(-d for d in dims.values())
    total = jnp.zeros(())
    for sign, costs in ((1.0, model_costs), (-1.0, guide_costs)):
        for cost in costs:
            keep = tuple(dims[p] for p in cost.ordinal if p in dims)
            total = total + sign * _expectation(cost, weights, keep, rank)
    return total


def _expectation(
    cost: _Cost,
    weights: Mapping[int, tuple[Array, frozenset, str]],
    keep: tuple[int, ...] = (),
    rank: int = 0,
) -> Array:
    """Sum of ``cost`` with its guide-enumerated dims averaged under q; the plate
    dims in ``keep`` are kept (``costs.sum_to_dims``, rank ``rank``)."""
    present = _enum_dims(cost.value, weights)
    if not present:
        return sum_to_dims(cost.value, keep, rank) if rank else jnp.sum(cost.value)
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
    return sum_to_dims(total, keep, rank) if rank else jnp.sum(total)
