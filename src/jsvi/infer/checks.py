"""Structural checks of a model/guide pair, run once before anything is compiled.

Everything here reads shapes, dtypes, plates and constraints only, never array
values, so it works on traced values too (``jax.vmap(jsvi.svi_init)``) and costs
nothing at run time: ``svi_init`` and ``jsvi.validate`` call it, ``svi_update``
does not.

May import: ``jsvi.core``, ``jsvi.constraints``, ``jsvi.infer.elbo``,
``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi import constraints
from jsvi._typing import all_true, is_concrete, shape_of
from jsvi.core.primitives import FactorDensity
from jsvi.core.runtime import CondIndepStackFrame
from jsvi.core.scan import SCAN_LENGTH_KEY
from jsvi.core.trace import Site, Trace, site_log_prob
from jsvi.distributions import (
    Delta,
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
    NonReparameterized,
)
from jsvi.errors import (
    ArgumentError,
    EnumerationWarning,
    GuidePlateWarning,
    JsviError,
    NonFiniteError,
    PlateBroadcastWarning,
    ShapeError,
    SiteError,
    SupportError,
)
from jsvi.infer.params import unconstrain
from jsvi.infer.traces import user_stacklevel, validation_flags

__all__ = [
    "check_traces",
    "is_internal",
    "value_checks",
    "warn_enumeration_without_effect",
    "warn_if_nothing_enumerated",
]


def is_internal(name: str) -> bool:
    """Whether a site name uses jsvi's reserved ``_jsvi/`` prefix."""
    return name.startswith("_jsvi/")


def check_traces(model_tr: Trace, guide_tr: Trace) -> None:
    """The structural checks every estimator needs; raise on the first problem.

    Assumes ``check_model_guide`` already passed (matching latent sites and value
    shapes). Checks that every batch dim of every sample site belongs to a plate,
    that observations have a usable dtype and their event shape, that a plate
    means the same thing wherever it is used, that model and guide declare shared
    params alike, and that each guide site's support lies inside the model's.

    Raises:
        ShapeError: a batch dim no plate accounts for; an obs whose rightmost dims
            are not the event shape; one plate name with two sizes or dims; a
            shared param with two shapes.
        SiteError: a shared param with two constraints.
        ArgumentError: an obs of a dtype the distribution cannot score.
        SupportError: a guide site whose support is not inside the model's.
    """
    for role, tr in (("guide", guide_tr), ("model", model_tr)):
        for name, site in tr.sample_sites().items():
            if is_internal(name) or isinstance(site.fn, FactorDensity):
                continue
            _check_batch_dims(role, site)
            _check_mask_and_scale(role, site)
            if site.is_observed:
                _check_obs(role, site)
    _check_plates(model_tr, guide_tr)
    _check_shared_params(model_tr, guide_tr)
    _check_supports(model_tr, guide_tr)
    warn_enumeration_without_effect(model_tr, guide_tr)


# ---------------------------------------------------------------------------
# warnings as Pyro gives them


def warn_enumeration_without_effect(model_tr: Trace, guide_tr: Trace) -> None:
    """Warn about plates only the guide has, and observed sites marked for
    enumeration (an observed value is not summed over)."""
    model_plates = {n for n, s in model_tr.items() if s.kind == "plate"}
    guide_only = [n for n, s in guide_tr.items() if s.kind == "plate" and n not in model_plates]
    if guide_only:
        warnings.warn(
            f"guide: plates {guide_only} are in the guide but not in the model, so "
            "the model's sites are not subsampled, scaled or batched by them. Use "
            "the same plates (same names) in model and guide.",
            GuidePlateWarning,
            stacklevel=user_stacklevel(),
        )
    for name, site in model_tr.observed_sites().items():
        if site.infer.get("enumerate") is not None and not is_internal(name):
            warnings.warn(
                f"model site {name!r}: observed, but marked for enumeration "
                f"(infer['enumerate']={site.infer['enumerate']!r}). An observed "
                "value is not summed over; drop the option from this site.",
                EnumerationWarning,
                stacklevel=user_stacklevel(),
            )


def warn_if_nothing_enumerated(model_tr: Trace, guide_tr: Trace) -> None:
    """The strict-enumeration warning of an enumerating estimator: no latent site
    of model or guide is marked for enumeration (as Pyro's ``TraceEnum_ELBO``
    warns)."""
    for tr in (model_tr, guide_tr):
        for site in tr.latent_sites().values():
            if site.infer.get("enumerate") is not None:
                return
    warnings.warn(
        "TraceEnum_ELBO: no sample site is marked for enumeration, so nothing is "
        "summed out. Mark discrete sites with jsvi.config_enumerate(model) or "
        "infer={'enumerate': 'parallel'}, or use jsvi.Trace_ELBO.",
        EnumerationWarning,
        stacklevel=user_stacklevel(),
    )


# ---------------------------------------------------------------------------
# batch dims and plates


def _plates_text(frames: tuple[CondIndepStackFrame, ...]) -> str:
    vectorized = [f for f in reversed(frames) if f.vectorized]
    if not vectorized:
        return "it sits in no plate"
    return "its plates: " + ", ".join(
        f"{f.name!r} (size {f.subsample_size}) at dim {f.dim}" for f in vectorized
    )


def _check_batch_dims(role: str, site: Site) -> None:
    batch_shape = tuple(site.fn.batch_shape)
    plate_dims = {f.dim for f in site.cond_indep_stack if f.vectorized}
    for i, size in enumerate(batch_shape):
        dim = i - len(batch_shape)
        if size == 1 or dim in plate_dims or (i == 0 and SCAN_LENGTH_KEY in site.infer):
            continue
        raise ShapeError(
            f"{role} site {site.name!r}: batch_shape {batch_shape} has size {size} at "
            f"dim {dim}, but no plate declares that dim ({_plates_text(site.cond_indep_stack)}). "
            f"If the {size} values are conditionally independent, wrap the site in "
            f"`with jsvi.plate(name, {size}, dim={dim}):`; if they form one joint "
            f"draw, make them event dims with .to_event({-dim})."
        )


def _check_mask_and_scale(role: str, site: Site) -> None:
    """A mask or scale may only broadcast into the site's log-density, never widen
    it: an ``(N, 1)`` mask in a plate of ``N`` would count every element ``N``
    times."""
    event_ndim = len(tuple(site.fn.event_shape))
    value_shape = shape_of(site.value)
    batch = tuple(site.fn.batch_shape)
    try:
        lp_shape = jnp.broadcast_shapes(value_shape[: len(value_shape) - event_ndim], batch)
    except ValueError:
        return  # the value's own shape problem is reported elsewhere
    for label, factor in (("mask", site.mask), ("scale", site.scale)):
        if factor is None:
            continue
        shape = shape_of(factor)
        try:
            widened = jnp.broadcast_shapes(shape, lp_shape) != tuple(lp_shape)
        except ValueError:
            widened = True
        if widened:
            raise ShapeError(
                f"{role} site {site.name!r}: its {label} has shape {shape}, which does "
                f"not fit the site's log-density of shape {tuple(lp_shape)} "
                f"({_plates_text(site.cond_indep_stack)}): it would widen the "
                "log-density and count elements more than once, or does not broadcast "
                f"at all. Give the {label} the site's batch shape {tuple(lp_shape)} (or "
                "a shape that broadcasts to it, e.g. without a trailing size-1 dim)."
            )


def _check_obs(role: str, site: Site) -> None:
    value, fn = site.value, site.fn
    leaves = jax.tree.leaves(value)
    if len(leaves) != 1:
        return  # structured values: the distribution checks them itself
    dtype = getattr(leaves[0], "dtype", None) or np.asarray(leaves[0]).dtype
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
            or jnp.issubdtype(dtype, jnp.bool_)):
        raise ArgumentError(
            f"{role} site {site.name!r}: obs has dtype {dtype}, which "
            f"{type(fn).__name__} cannot score. Pass a real, integer or boolean "
            "array (e.g. jnp.asarray(y, jnp.int32) for counts and class labels)."
        )
    support = getattr(fn, "support", None)
    if getattr(support, "is_discrete", False) and jnp.issubdtype(dtype, jnp.floating):
        if is_concrete(leaves[0]):
            arr = np.asarray(leaves[0])
            if arr.size and not np.all(np.isnan(arr) | (arr == np.round(arr))):
                raise SupportError(
                    f"{role} site {site.name!r}: obs has non-integer values (dtype "
                    f"{dtype}, e.g. {arr[arr != np.round(arr)].flat[0]}), but "
                    f"{type(fn).__name__} has support {support!r}. Observe whole "
                    "numbers, ideally as an integer array."
                )
    event_shape = tuple(fn.event_shape)
    shape = shape_of(value)
    if event_shape and shape[len(shape) - len(event_shape):] != event_shape:
        raise ShapeError(
            f"{role} site {site.name!r}: obs has shape {shape}, but its rightmost "
            f"dims must be the event_shape {event_shape} of {type(fn).__name__}. "
            "Reshape the data, or check which dims the distribution treats as one event."
        )
    batch_ndim = len(shape) - len(event_shape)
    for f in site.cond_indep_stack:
        if not f.vectorized:
            continue
        has_dim = bool(shape) and batch_ndim >= -f.dim
        if f.subsample_size > 1 and (not shape or (has_dim and shape[batch_ndim + f.dim] == 1)):
            warnings.warn(
                f"{role} site {site.name!r}: the observed value of shape {shape} has "
                f"size 1 along plate {f.name!r} (size {f.subsample_size}, dim {f.dim}), "
                f"so one value is counted {f.subsample_size} times. If that is meant, "
                "expand the data to the plate's size; if it is a loader's short last "
                "batch, drop it or pad it.",
                PlateBroadcastWarning,
                stacklevel=user_stacklevel(),
            )
            continue
        if f.vectorized and shape and batch_ndim < -f.dim:
            raise ShapeError(
                f"{role} site {site.name!r}: obs has shape {shape}, which has no dim "
                f"for plate {f.name!r} (size {f.subsample_size}, dim {f.dim}) once the "
                f"event_shape {event_shape} is taken off the right: the observation "
                f"would be broadcast and counted {f.subsample_size} times. If the "
                "rightmost data dim is the plate's, the distribution has too many event "
                "dims (drop a .to_event); otherwise give obs that dim."
            )


def _plate_uses(tr: Trace) -> Iterator[tuple[str, CondIndepStackFrame]]:
    for name, site in tr.items():
        for f in site.cond_indep_stack:
            yield name, f


def _check_plates(model_tr: Trace, guide_tr: Trace) -> None:
    seen: dict[str, tuple[str, str, CondIndepStackFrame]] = {}
    for role, tr in (("guide", guide_tr), ("model", model_tr)):
        for site_name, f in _plate_uses(tr):
            old = seen.setdefault(f.name, (role, site_name, f))
            o_role, o_site, g = old
            same = (g.size, g.subsample_size) == (f.size, f.subsample_size) and (
                g.dim == f.dim or g.dim is None or f.dim is None
            )
            if not same:
                raise ShapeError(
                    f"plate {f.name!r}: the {role} uses it at site {site_name!r} with "
                    f"{_frame_text(f)}, but the {o_role} at site {o_site!r} with "
                    f"{_frame_text(g)}. A plate names one independent dimension: use "
                    "the same size, subsample_size and dim everywhere (or give the "
                    "second plate its own name)."
                )


def _frame_text(f: CondIndepStackFrame) -> str:
    where = f"dim {f.dim}" if f.vectorized else "sequentially"
    return f"size {f.size}, subsample_size {f.subsample_size}, {where}"


# ---------------------------------------------------------------------------
# params shared by model and guide


def _param_shapes(site: Site) -> tuple[Any, ...]:
    leaves, treedef = jax.tree.flatten(site.value)
    return treedef, tuple(shape_of(v) for v in leaves)


def _check_shared_params(model_tr: Trace, guide_tr: Trace) -> None:
    guide_params = guide_tr.param_sites()
    for name, m_site in model_tr.param_sites().items():
        g_site = guide_params.get(name)
        if g_site is None:
            continue
        if m_site.constraint != g_site.constraint:
            raise SiteError(
                f"param {name!r}: declared with constraint {g_site.constraint!r} in "
                f"the guide but {m_site.constraint!r} in the model. A shared param has "
                "one constraint: declare it alike in both, or rename one."
            )
        if _param_shapes(m_site) != _param_shapes(g_site):
            raise ShapeError(
                f"param {name!r}: the guide's init has shape "
                f"{_param_shapes(g_site)[1]} but the model's {_param_shapes(m_site)[1]}. "
                "A shared param has one shape: declare it alike in both, or rename one."
            )


# ---------------------------------------------------------------------------
# supports of latent sites


def _bounds(c: Any) -> tuple[Any, Any, bool] | None:
    """``(low, high, discrete)`` of a scalar support known here, else ``None``.
    Bounds are floats, or arrays where the constraint holds array bounds."""
    if isinstance(c, constraints.Independent):
        return _bounds(c.base_constraint)
    table = {
        constraints.Real: (-math.inf, math.inf),
        constraints.Positive: (0.0, math.inf),
        constraints.Nonnegative: (0.0, math.inf),
        constraints.UnitInterval: (0.0, 1.0),
        constraints.Boolean: (0.0, 1.0),
        constraints.NonnegativeInteger: (0.0, math.inf),
        constraints.PositiveInteger: (1.0, math.inf),
    }
    if type(c) in table:
        low, high = table[type(c)]
        return low, high, c.is_discrete
    fields = {
        constraints.GreaterThan: ("lower_bound", None),
        constraints.LessThan: (None, "upper_bound"),
        constraints.Interval: ("lower_bound", "upper_bound"),
        constraints.IntegerGreaterThan: ("lower_bound", None),
        constraints.IntegerInterval: ("lower_bound", "upper_bound"),
    }
    names = fields.get(type(c))
    if names is None:
        return None
    out = []
    for field, default in zip(names, (-math.inf, math.inf), strict=True):
        value = default if field is None else getattr(c, field, None)
        if isinstance(value, (int, float)):
            out.append(float(value))
        elif value is None:
            return None
        else:
            out.append(value)  # an array bound: compared as a value check
    return out[0], out[1], c.is_discrete


def _support_pairs(model_tr: Trace, guide_tr: Trace) -> Iterator[tuple[str, Site, Site, Any, Any]]:
    """``(name, guide site, model site, guide bounds, model bounds)`` of every
    latent site whose two supports are known intervals."""
    model_samples = model_tr.sample_sites()
    for name, g_site in guide_tr.latent_sites().items():
        m_site = model_samples.get(name)
        if m_site is None or is_internal(name) or _is_point_mass(g_site.fn):
            continue
        g = _bounds(getattr(g_site.fn, "support", None))
        m = _bounds(getattr(m_site.fn, "support", None))
        if g is not None and m is not None:
            yield name, g_site, m_site, g, m


def _support_message(name: str, g_site: Site, m_site: Site, g: Any, m: Any) -> str:
    kinds = ("discrete", "continuous")
    return (
        f"guide site {name!r}: the guide draws from {type(g_site.fn).__name__} "
        f"with support {g_site.fn.support!r} ({kinds[not g[2]]}), which is not inside "
        f"the model's support {m_site.fn.support!r} ({kinds[not m[2]]}) for "
        f"{type(m_site.fn).__name__}; the model's log-density would be -inf or "
        "undefined at some draws. Use a guide family with the model's support "
        "(e.g. LogNormal or a TransformedDistribution with "
        "jsvi.transforms.biject_to(support) for a constrained site)"
    )


def _is_point_mass(fn: Any) -> bool:
    """Delta guides put their mass wherever their value is (e.g. a constrained param)."""
    while isinstance(
        fn, (Independent, ExpandedDistribution, MaskedDistribution, NonReparameterized)
    ):
        fn = fn.base_dist
    return isinstance(fn, Delta)


def _check_supports(model_tr: Trace, guide_tr: Trace) -> None:
    for name, g_site, m_site, g, m in _support_pairs(model_tr, guide_tr):
        if not all(isinstance(b, float) for b in (*g[:2], *m[:2])):
            continue  # array bounds: see value_checks
        if g[2] != m[2] or g[0] < m[0] or g[1] > m[1]:
            raise SupportError(_support_message(name, g_site, m_site, g, m) + ".")


# ---------------------------------------------------------------------------
# value checks (evaluated where values are concrete)


def _all(flags: list[Any]) -> Any:
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


def value_checks(
    model_tr: Trace, guide_tr: Trace
) -> list[tuple[type[JsviError], str, Any]]:
    """``(error_class, message, ok)`` triples, ``ok`` a boolean scalar array, in
    check order.

    Every param's init lies inside its constraint and maps to a finite
    unconstrained value; every validated distribution's arguments, and every
    observation, lie in their supports; every site's log-density is finite at the
    point checked. Messages read ``<where>: <what is wrong>. <how to fix it>``
    without the final period.
    """
    checks: list[tuple[type[JsviError], str, Any]] = []
    seen: set[str] = set()
    for tr in (guide_tr, model_tr):
        for name, site in tr.param_sites().items():
            if name in seen:
                continue
            seen.add(name)
            leaves = jax.tree.leaves(site.value)
            checks.append((
                SupportError,
                f"param {name!r}: init value lies outside its constraint "
                f"{site.constraint!r}. Give an init_value inside the constraint",
                _all([all_true(site.constraint.check(v)) for v in leaves]),
            ))
            unconstrained = jax.tree.leaves(unconstrain(site.value, site.constraint))
            checks.append((
                SupportError,
                f"param {name!r}: init value is not finite in unconstrained space (NaN, "
                f"inf, or on the boundary of {site.constraint!r}). Give a finite "
                "init_value strictly inside the constraint",
                _all([all_true(jnp.isfinite(u)) for u in unconstrained]),
            ))
    for where, ok in validation_flags((guide_tr, model_tr)).items():
        checks.append((
            SupportError,
            f"{where} violates its constraint (distribution validation is on). Fix "
            "the value, or pass validate_args=False to the distribution",
            ok,
        ))
    for name, g_site, m_site, g, m in _support_pairs(model_tr, guide_tr):
        if all(isinstance(b, float) for b in (*g[:2], *m[:2])):
            continue  # compared in check_traces
        low_g, high_g, low_m, high_m = (jnp.asarray(b) for b in (*g[:2], *m[:2]))

        def slack(bound: Any) -> Any:  # bounds computed through a transform round
            eps = jnp.finfo(jnp.result_type(float, bound)).eps
            return 8 * eps * (1.0 + jnp.abs(jnp.where(jnp.isfinite(bound), bound, 0.0)))

        ok = jnp.asarray(g[2] == m[2])
        ok = ok & all_true(low_g >= low_m - slack(low_m))
        ok = ok & all_true(high_g <= high_m + slack(high_m))
        checks.append((SupportError, _support_message(name, g_site, m_site, g, m), ok))
    for role, tr in (("guide", guide_tr), ("model", model_tr)):
        for name, site in tr.sample_sites().items():
            if is_internal(name):
                continue
            checks.append((
                NonFiniteError,
                f"{role} site {name!r}: log-density is not finite at the point "
                "checked (params at their init values, latent sites at a fixed point "
                "of their support). Check the distribution's arguments there, and that "
                "the guide proposes only values inside the model's support",
                all_true(jnp.isfinite(site_log_prob(site))),
            ))
    return checks
