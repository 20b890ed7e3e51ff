"""Property-based checks (hypothesis) of every concrete family in jsvi.distributions.

Parameters are drawn inside each family's valid domain (scales and rates in
[0.1, 10], concentrations and degrees of freedom in [0.5, 20], locations in
[-3, 3], probabilities in [0.01, 0.99], logits in [-5, 5], counts in [0, 10]),
each with its own shape broadcasting to the batch shape; keys come from drawn
seeds (``jax.random.key(seed)``). Checked, for every family:

1. the drawn parameters satisfy the family's ``arg_constraints`` and the samples
   lie in its ``support``;
2. ``log_prob`` at the samples is finite, floating, of shape
   ``sample_shape + batch_shape``;
3. ``to_event(n)``'s ``log_prob`` is the base ``log_prob`` summed over the ``n``
   reinterpreted dims (every ``n``), and its support accepts the draws;
   ``expand(shape)`` (also of a ``to_event`` result) and ``ExpandedDistribution``
   (the lazy expansion plates use) give the base ``log_prob`` broadcast to
   ``shape``; ``mask(m)`` keeps ``log_prob`` where ``m`` holds and gives exactly
   0 elsewhere (everywhere for ``mask(False)``);
4. with ``has_rsample``, ``sample(...).sum()`` has finite gradients w.r.t. every
   parameter, through the constructor (``jax.grad`` of build-then-sample);
5. shapes, for batch shapes from ``lists(integers(1, 3), max_size=2)`` and
   sample shapes from ``{(), (2,)}``: of the stored parameters (broadcast to the
   batch), of the draws, of ``log_prob`` and ``support.check``, and of the
   ``to_event(n)``, ``expand(shape)``, ``ExpandedDistribution`` (its draws too)
   and ``mask(m)`` results.

Cost: XLA compiles dominate, 0.5-4 s per family (the gamma-based, Poisson and
Binomial samplers and their gradients are the costly ones) and again for every
new shape. So checks 1-4 run at one fixed batch shape ``BATCH`` and sample shape
``SAMPLE`` through one jitted program per family (``_evaluate``), compiled on
the family's first example and reused by every example of every test: only the
values and seeds vary (parameters enter it broadcast to ``BATCH``). Checks 5 draw the shapes and run under
``jax.eval_shape``, which traces without compiling. Distributions are built
with ``validate_args=False``, since arguments and support are checked directly.
Examples are derandomized, so every run checks the same cases.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

import jsvi.distributions as dist

# Each example compiles new programs (new shapes), so examples are the cost of this
# file: 8 fixed (derandomized) examples per family and property in CI; set
# JSVI_PROPERTY_EXAMPLES (e.g. 100) for a deeper search.
SETTINGS = settings(
    max_examples=int(os.environ.get("JSVI_PROPERTY_EXAMPLES", "8")),
    deadline=None,
    derandomize=True,
    database=None,
)

# float32 checks. RTOL is ~84 ulps (eps = 2**-23): room for one formula compiled
# twice (at other shapes, so with other fusions, fused multiply-adds or reduction
# orders). A float32 sum of m terms may be off by the recursive-summation bound
# m * eps * sum|t| on top.
F32_EPS = float(np.finfo(np.float32).eps)
RTOL = 1e-5

LOC = (-3.0, 3.0)
SCALE = (0.1, 10.0)
CONC = (0.5, 20.0)
PROB = (0.01, 0.99)
LOGIT = (-5.0, 5.0)
UNIT = (-1.0, 1.0)  # off-diagonal factors of covariance matrices

Shape = tuple[int, ...]

# Checks 1-4 use one shape (see the module docstring). BATCH has a size-1 dim for
# expand to grow; EXPANDED adds a leading dim of size SAMPLE[0], so the draws
# (SAMPLE + BATCH) broadcast against it and expand(EXPANDED).log_prob(draws) is
# log_prob(draws) broadcast; to_event(1).expand(EXPANDED[:-1]) expands the base
# to EXPANDED as well.
BATCH = (1, 3)
SAMPLE = (2,)
EXPANDED = (2, 3, 3)

BATCH_SHAPES = st.lists(st.integers(1, 3), max_size=2).map(tuple)
SAMPLE_SHAPES = st.sampled_from([(), (2,)])
SEEDS = st.integers(0, 2**31 - 1)


# ------------------------------------------------------------------ strategies


def _floats(bounds: tuple[float, float]) -> st.SearchStrategy[float]:
    lo, hi = (float(np.float32(b)) for b in bounds)  # exact float32 bounds
    # No subnormals: XLA on CPU flushes them to zero.
    return st.floats(lo, hi, width=32, allow_subnormal=False)


def _array(shape: Shape, bounds: tuple[float, float]) -> st.SearchStrategy:
    return hnp.arrays(np.float32, shape, elements=_floats(bounds))


@st.composite
def _broadcasting_to(draw, shape: Shape) -> Shape:
    """A shape that broadcasts to ``shape``: leading dims dropped, others set to 1."""
    kept = shape[draw(st.integers(0, len(shape))) :]
    return tuple(s if draw(st.booleans()) else 1 for s in kept)


@st.composite
def _param_shapes(draw, batch_shape: Shape, n: int) -> list[Shape]:
    """``n`` parameter batch shapes whose broadcast is exactly ``batch_shape``."""
    full = draw(st.integers(0, n - 1))
    return [
        batch_shape if i == full else draw(_broadcasting_to(batch_shape))
        for i in range(n)
    ]


@st.composite
def _expanded(draw, batch_shape: Shape) -> Shape:
    """A shape ``batch_shape`` expands to: new leading dims, size-1 dims grown."""
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=1)))
    grown = tuple(draw(st.integers(1, 3)) if s == 1 else s for s in batch_shape)
    return lead + grown


def _elementwise(**bounds: tuple[float, float]):
    """Univariate families: one float array per parameter name."""

    @st.composite
    def params(draw, batch_shape: Shape) -> dict[str, np.ndarray]:
        shapes = draw(_param_shapes(batch_shape, len(bounds)))
        return {
            name: draw(_array(shape, b))
            for (name, b), shape in zip(bounds.items(), shapes)
        }

    return params


@st.composite
def _uniform(draw, batch_shape: Shape) -> dict[str, np.ndarray]:
    s_low, s_width = draw(_param_shapes(batch_shape, 2))
    low = draw(_array(s_low, LOC))
    # |low| <= 3 and width >= 0.1, so high > low also after float32 rounding.
    return {"low": low, "high": low + draw(_array(s_width, SCALE))}


def _binomial(name: str):
    @st.composite
    def params(draw, batch_shape: Shape) -> dict[str, Any]:
        s_count, s_p = draw(_param_shapes(batch_shape, 2))
        counts = st.integers(0, 10)
        count_array = hnp.arrays(np.int32, s_count, elements=counts)
        # A Python int count is kept static by Binomial: draw both kinds.
        count = draw(st.one_of(counts, count_array) if s_count == () else count_array)
        p = draw(_array(s_p, PROB if name == "probs" else LOGIT))
        return {"total_count": count, name: p}

    return params


def _delta(event_size: int | None):
    @st.composite
    def params(draw, batch_shape: Shape) -> dict[str, np.ndarray]:
        s_v, s_ld = draw(_param_shapes(batch_shape, 2))
        event = () if event_size is None else (event_size,)
        return {
            "v": draw(_array(s_v + event, LOC)),
            "log_density": draw(_array(s_ld, LOC)),
        }

    return params


def _categorical(name: str, k: int = 3):
    @st.composite
    def params(draw, batch_shape: Shape) -> dict[str, np.ndarray]:
        if name == "logits":
            return {"logits": draw(_array(batch_shape + (k,), LOGIT))}
        weights = draw(_array(batch_shape + (k,), SCALE))
        return {"probs": weights / weights.sum(-1, keepdims=True)}

    return params


@st.composite
def _dirichlet(draw, batch_shape: Shape) -> dict[str, np.ndarray]:
    return {"concentration": draw(_array(batch_shape + (3,), CONC))}


def _mvn(matrix: str, k: int = 2):
    @st.composite
    def params(draw, batch_shape: Shape) -> dict[str, np.ndarray]:
        s_loc, s_mat = draw(_param_shapes(batch_shape, 2))
        factor = draw(_array(s_mat + (k, k), UNIT))
        diag = draw(_array(s_mat + (k,), SCALE))[..., None] * np.eye(
            k, dtype=np.float32
        )
        if matrix == "scale_tril":
            m = np.tril(factor, -1) + diag
        else:  # A A^T + D: symmetric (the same products on both sides) and PD
            m = factor @ np.swapaxes(factor, -1, -2) + diag
        return {"loc": draw(_array(s_loc + (k,), LOC)), matrix: m}

    return params


@st.composite
def _low_rank(draw, batch_shape: Shape, k: int = 3, rank: int = 2):
    s_loc, s_w, s_d = draw(_param_shapes(batch_shape, 3))
    return {
        "loc": draw(_array(s_loc + (k,), LOC)),
        "cov_factor": draw(_array(s_w + (k, rank), UNIT)),
        "cov_diag": draw(_array(s_d + (k,), SCALE)),
    }


def _truncated(sides: str):
    @st.composite
    def params(draw, batch_shape: Shape) -> dict[str, np.ndarray]:
        shapes = draw(_param_shapes(batch_shape, 4))
        out = {
            "loc": draw(_array(shapes[0], LOC)),
            "scale": draw(_array(shapes[1], SCALE)),
        }
        low = draw(_array(shapes[2], LOC))
        if "low" in sides:
            out["low"] = low
        if "high" in sides:
            # |low| <= 3 and width >= 0.1: high > low after float32 rounding.
            out["high"] = low + draw(_array(shapes[3], SCALE))
        return out

    return params


@st.composite
def _discrete_uniform(draw, batch_shape: Shape) -> dict[str, np.ndarray]:
    s_low, s_width = draw(_param_shapes(batch_shape, 2))
    low = draw(hnp.arrays(np.int32, s_low, elements=st.integers(-3, 3)))
    width = draw(hnp.arrays(np.int32, s_width, elements=st.integers(0, 5)))
    return {"low": low, "high": low + width}


def _counts_vector(name: str, bounds: tuple[float, float], k: int = 3):
    """A total_count (ints) and a vector parameter with K = k entries."""

    @st.composite
    def params(draw, batch_shape: Shape) -> dict[str, Any]:
        s_count, s_vec = draw(_param_shapes(batch_shape, 2))
        count = draw(hnp.arrays(np.int32, s_count, elements=st.integers(0, 10)))
        vec = draw(_array(s_vec + (k,), bounds))
        if name == "probs":
            vec = vec / vec.sum(-1, keepdims=True)
        return {"total_count": count, name: vec}

    return params


@st.composite
def _beta_binomial(draw, batch_shape: Shape) -> dict[str, Any]:
    s_a, s_b, s_n = draw(_param_shapes(batch_shape, 3))
    return {
        "concentration1": draw(_array(s_a, CONC)),
        "concentration0": draw(_array(s_b, CONC)),
        "total_count": draw(hnp.arrays(np.int32, s_n, elements=st.integers(0, 10))),
    }


def _relaxed_one_hot(name: str, k: int = 3):
    @st.composite
    def params(draw, batch_shape: Shape) -> dict[str, np.ndarray]:
        s_t, s_p = draw(_param_shapes(batch_shape, 2))
        out = {"temperature": draw(_array(s_t, SCALE))}
        if name == "logits":
            out["logits"] = draw(_array(s_p + (k,), LOGIT))
        else:
            weights = draw(_array(s_p + (k,), SCALE))
            out["probs"] = weights / weights.sum(-1, keepdims=True)
        return out

    return params


@st.composite
def _student_t(draw, batch_shape: Shape) -> dict[str, np.ndarray]:
    s_df, s_rest = draw(_param_shapes(batch_shape, 2))
    return {"df": draw(_array(s_df, CONC)), **draw(_mvn("scale_tril")(s_rest))}


@st.composite
def _mixture_same(draw, batch_shape: Shape, k: int = 2) -> dict[str, np.ndarray]:
    s_w, s_loc, s_scale = draw(_param_shapes(batch_shape, 3))
    return {
        "logits": draw(_array(s_w + (k,), LOGIT)),
        "loc": draw(_array(s_loc + (k,), LOC)),
        "scale": draw(_array(s_scale + (k,), SCALE)),
    }


def _make_mixture_same(logits, loc, scale):
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits, validate_args=False),
        dist.Normal(loc, scale, validate_args=False),
    )


def _make_mixture_general(logits, loc, scale):
    return dist.MixtureGeneral(
        dist.Categorical(logits=logits, validate_args=False),
        [
            dist.Normal(loc, scale, validate_args=False),
            dist.Gumbel(loc, scale, validate_args=False),
        ],
    )


def _make_zero_inflated(rate, gate_logits):
    base = dist.Poisson(rate, validate_args=False)
    return dist.ZeroInflatedDistribution(base, gate_logits=gate_logits)


# -------------------------------------------------------------------- families


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    cls: type[dist.Distribution]
    params: Callable[[Shape], st.SearchStrategy[dict[str, Any]]]
    event_shape: Shape = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    # Families built from other distributions: a maker taking the parameter dict,
    # and the event dims of parameters that are not the family's own arguments.
    make: Callable[..., dist.Distribution] | None = None
    param_event_dims: tuple[tuple[str, int], ...] = ()
    def build(self, params: dict[str, Any]) -> dist.Distribution:
        if self.make is not None:
            return self.make(**params, **dict(self.kwargs))
        return self.cls(**params, **dict(self.kwargs), validate_args=False)

    def __repr__(self) -> str:
        return self.name


FAMILIES = [
    Family("Normal", dist.Normal, _elementwise(loc=LOC, scale=SCALE)),
    Family("LogNormal", dist.LogNormal, _elementwise(loc=LOC, scale=SCALE)),
    Family("HalfNormal", dist.HalfNormal, _elementwise(scale=SCALE)),
    Family("HalfCauchy", dist.HalfCauchy, _elementwise(scale=SCALE)),
    Family("Cauchy", dist.Cauchy, _elementwise(loc=LOC, scale=SCALE)),
    Family("Laplace", dist.Laplace, _elementwise(loc=LOC, scale=SCALE)),
    Family("StudentT", dist.StudentT, _elementwise(df=CONC, loc=LOC, scale=SCALE)),
    Family("Uniform", dist.Uniform, _uniform),
    Family("Beta", dist.Beta, _elementwise(concentration1=CONC, concentration0=CONC)),
    Family("Gamma", dist.Gamma, _elementwise(concentration=CONC, rate=SCALE)),
    Family("Exponential", dist.Exponential, _elementwise(rate=SCALE)),
    Family("Dirichlet", dist.Dirichlet, _dirichlet, (3,)),
    Family(
        "MultivariateNormal(scale_tril)",
        dist.MultivariateNormal,
        _mvn("scale_tril"),
        (2,),
    ),
    Family(
        "MultivariateNormal(covariance_matrix)",
        dist.MultivariateNormal,
        _mvn("covariance_matrix"),
        (2,),
    ),
    Family(
        "MultivariateNormal(precision_matrix)",
        dist.MultivariateNormal,
        _mvn("precision_matrix"),
        (2,),
    ),
    Family(
        "LowRankMultivariateNormal", dist.LowRankMultivariateNormal, _low_rank, (3,)
    ),
    Family("Delta", dist.Delta, _delta(None)),
    Family("Delta(event_dim=1)", dist.Delta, _delta(2), (2,), (("event_dim", 1),)),
    Family("Bernoulli(probs)", dist.Bernoulli, _elementwise(probs=PROB)),
    Family("Bernoulli(logits)", dist.Bernoulli, _elementwise(logits=LOGIT)),
    Family("Binomial(probs)", dist.Binomial, _binomial("probs")),
    Family("Binomial(logits)", dist.Binomial, _binomial("logits")),
    Family("Categorical(probs)", dist.Categorical, _categorical("probs")),
    Family("Categorical(logits)", dist.Categorical, _categorical("logits")),
    Family(
        "OneHotCategorical(probs)",
        dist.OneHotCategorical,
        _categorical("probs"),
        (3,),
    ),
    Family(
        "OneHotCategorical(logits)",
        dist.OneHotCategorical,
        _categorical("logits"),
        (3,),
    ),
    Family("Poisson", dist.Poisson, _elementwise(rate=SCALE)),
    Family("Chi2", dist.Chi2, _elementwise(df=CONC)),
    Family(
        "InverseGamma",
        dist.InverseGamma,
        _elementwise(concentration=CONC, rate=SCALE),
    ),
    Family("Gumbel", dist.Gumbel, _elementwise(loc=LOC, scale=SCALE)),
    Family("Logistic", dist.Logistic, _elementwise(loc=LOC, scale=SCALE)),
    Family("SoftLaplace", dist.SoftLaplace, _elementwise(loc=LOC, scale=SCALE)),
    Family(
        "AsymmetricLaplace",
        dist.AsymmetricLaplace,
        _elementwise(loc=LOC, scale=SCALE, asymmetry=SCALE),
    ),
    Family("Weibull", dist.Weibull, _elementwise(scale=SCALE, concentration=CONC)),
    Family("Pareto", dist.Pareto, _elementwise(scale=SCALE, alpha=CONC)),
    Family(
        "Kumaraswamy",
        dist.Kumaraswamy,
        _elementwise(concentration1=CONC, concentration0=CONC),
    ),
    Family("VonMises", dist.VonMises, _elementwise(loc=LOC, concentration=CONC)),
    Family("TruncatedNormal", dist.TruncatedNormal, _truncated("low high")),
    Family("TruncatedNormal(low)", dist.TruncatedNormal, _truncated("low")),
    Family(
        "LKJCholesky",
        dist.LKJCholesky,
        _elementwise(concentration=CONC),
        (3, 3),
        (("dimension", 3),),
    ),
    Family(
        "LKJ", dist.LKJ, _elementwise(concentration=CONC), (3, 3), (("dimension", 3),)
    ),
    Family("MultivariateStudentT", dist.MultivariateStudentT, _student_t, (2,)),
    Family(
        "GaussianRandomWalk",
        dist.GaussianRandomWalk,
        _elementwise(scale=SCALE),
        (3,),
        (("num_steps", 3),),
    ),
    Family("Geometric(probs)", dist.Geometric, _elementwise(probs=PROB)),
    Family("DiscreteUniform", dist.DiscreteUniform, _discrete_uniform),
    Family(
        "Multinomial(probs)", dist.Multinomial, _counts_vector("probs", SCALE), (3,)
    ),
    Family("BetaBinomial", dist.BetaBinomial, _beta_binomial),
    Family(
        "DirichletMultinomial",
        dist.DirichletMultinomial,
        _counts_vector("concentration", CONC),
        (3,),
    ),
    Family(
        "GammaPoisson",
        dist.GammaPoisson,
        _elementwise(concentration=CONC, rate=SCALE),
    ),
    Family(
        "NegativeBinomialProbs",
        dist.NegativeBinomialProbs,
        _elementwise(total_count=CONC, probs=PROB),
    ),
    Family(
        "NegativeBinomialLogits",
        dist.NegativeBinomialLogits,
        _elementwise(total_count=CONC, logits=LOGIT),
    ),
    Family(
        "NegativeBinomial2",
        dist.NegativeBinomial2,
        _elementwise(mean=SCALE, concentration=CONC),
    ),
    Family(
        "ZeroInflatedPoisson",
        dist.ZeroInflatedPoisson,
        _elementwise(gate=PROB, rate=SCALE),
        param_event_dims=(("rate", 0),),
    ),
    Family(
        "ZeroInflatedNegativeBinomial2",
        dist.ZeroInflatedNegativeBinomial2,
        _elementwise(mean=SCALE, concentration=CONC, gate=PROB),
        param_event_dims=(("mean", 0), ("concentration", 0)),
    ),
    Family(
        "ZeroInflatedDistribution",
        dist.ZeroInflatedDistribution,
        _elementwise(rate=SCALE, gate_logits=LOGIT),
        make=_make_zero_inflated,
        param_event_dims=(("rate", 0),),
    ),
    Family(
        "MixtureSameFamily",
        dist.MixtureSameFamily,
        _mixture_same,
        make=_make_mixture_same,
        param_event_dims=(("logits", 1), ("loc", 1), ("scale", 1)),
    ),
    Family(
        "MixtureGeneral",
        dist.MixtureGeneral,
        _mixture_same,
        make=lambda logits, loc, scale: _make_mixture_general(
            logits, loc[..., 0], scale[..., 0]
        ),
        param_event_dims=(("logits", 1), ("loc", 1), ("scale", 1)),
    ),
    Family(
        "RelaxedBernoulli(probs)",
        dist.RelaxedBernoulli,
        _elementwise(temperature=SCALE, probs=PROB),
    ),
    Family(
        "RelaxedOneHotCategorical(probs)",
        dist.RelaxedOneHotCategorical,
        _relaxed_one_hot("probs"),
        (3,),
    ),
]
REPARAMETERIZED = [f for f in FAMILIES if f.cls.has_rsample]

all_families = pytest.mark.parametrize("family", FAMILIES, ids=repr)


def test_every_exported_family_is_covered():
    wrappers = {
        dist.Distribution,
        dist.ExpandedDistribution,
        dist.Independent,
        dist.MaskedDistribution,
        dist.NonReparameterized,
        dist.TransformedDistribution,
    }
    exported = {getattr(dist, name) for name in dist.__all__}
    families = {
        c for c in exported if isinstance(c, type) and issubclass(c, dist.Distribution)
    }
    assert {f.cls for f in FAMILIES} == families - wrappers


# --------------------------------------------------------------------- helpers


@dataclasses.dataclass(frozen=True)
class Case:
    params: dict[str, Any]  # as drawn: each with a shape broadcasting to the batch
    full: dict[str, np.ndarray]  # the same values broadcast to batch + event shape
    key: jax.Array


_EVENT_DIMS: dict[str, dict[str, int]] = {}


def _case(data, family: Family, batch_shape: Shape = BATCH) -> Case:
    params = data.draw(family.params(batch_shape), label="params")
    if family.name not in _EVENT_DIMS:  # they do not depend on the values
        constraints = jax.eval_shape(family.build, params).arg_constraints
        own = dict(family.param_event_dims)
        _EVENT_DIMS[family.name] = {
            k: own[k] if k in own else constraints[k].event_dim for k in params
        }
    event_dims = _EVENT_DIMS[family.name]
    full = {}
    for name, value in params.items():
        value = np.asarray(value)
        if value.dtype.kind == "i":
            value = value.astype(np.int32)  # the default int dtype (no x64)
        event = value.shape[value.ndim - event_dims[name] :]
        full[name] = np.broadcast_to(value, batch_shape + event)
    return Case(params, full, jax.random.key(data.draw(SEEDS, label="seed")))


@functools.partial(jax.jit, static_argnums=0)
def _evaluate(family: Family, params, key, mask, draws=None) -> dict[str, Any]:
    """Everything the numerical tests look at, for batch ``BATCH`` and draws of
    shape ``SAMPLE``: one compiled program per family, whatever the values."""
    grads = None
    if draws is None and family.cls.has_rsample:

        def total(p):
            x = family.build(p).sample(key, SAMPLE)
            return jnp.sum(x), x

        grads, draws = jax.grad(total, has_aux=True)(params)
    elif draws is None:
        draws = family.build(params).sample(key, SAMPLE)
    d = family.build(params)
    ind = [d.to_event(n) for n in range(len(BATCH) + 1)]
    return {
        "draws": draws,
        "grads": grads,
        "args_ok": {k: jnp.all(ok) for k, ok in d.validation_flags().items()},
        "in_support": d.support.check(draws),
        "lp": d.log_prob(draws),
        "in_support_ind": [i.support.check(draws) for i in ind],
        "lp_ind": [i.log_prob(draws) for i in ind],
        "lp_expanded": d.expand(EXPANDED).log_prob(draws),
        "lp_lazily_expanded": dist.ExpandedDistribution(d, EXPANDED).log_prob(draws),
        "lp_ind_expanded": ind[1].expand(EXPANDED[:-1]).log_prob(draws),
        "lp_masked": d.mask(mask).log_prob(draws),
        "lp_masked_out": d.mask(False).log_prob(draws),
    }


def _run(family: Family, case: Case, mask=None) -> dict[str, Any]:
    if mask is None:
        mask = np.ones(BATCH, bool)
    draws = None
    if not family.cls.has_rsample:
        # Discrete samplers are jitted inside jax.random: sampled eagerly, the two
        # Binomial parametrizations share one compile of the sampler. Built from
        # the drawn parameters, so a Python int total_count stays static.
        draws = family.build(case.params).sample(case.key, SAMPLE)
    out = _evaluate(family, case.full, case.key, mask, draws)
    out = jax.tree.map(np.asarray, out)
    out["term_scale"] = _term_scale(case.params, draws)
    return out


def _term_scale(params: dict[str, Any], draws: Any) -> float:
    """Size of the largest term of a log-density: 1 for continuous families; for
    discrete ones, whose log-densities are sums of lgamma terms (normalizers of
    counts) with arguments at most ``1 + value + the parameters``, the largest
    such lgamma."""
    if draws is None:
        return 1.0
    bound = 1.0 + np.max(np.abs(np.asarray(draws, np.float64)))
    bound += sum(float(np.max(np.abs(np.asarray(v, np.float64)))) for v in params.values())
    return max(1.0, float(scipy.special.gammaln(bound)))


def _assert_close(actual, expected, scale: float = 1.0) -> None:
    """Equal up to float32 rounding: within RTOL of ``max(scale, |expected|)``.
    Two compilations of one formula (other shapes, other fusions or fused
    multiply-adds) may round its terms differently, and those terms are of size
    ``scale`` (``_term_scale``, at least 1) even where they cancel to a
    log-density near 0."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    tol = RTOL * np.maximum(max(1.0, scale), np.abs(expected))
    err = np.abs(actual.astype(np.float64) - expected)
    assert np.all(err <= tol), f"|error| {err} exceeds {tol}"


def _assert_sum_close(actual, terms, n: int) -> None:
    """``actual`` is float32 ``terms`` summed over their ``n`` rightmost dims:
    within RTOL of the exact sum plus the summation bound ``m * eps * sum|t|``."""
    terms = np.asarray(terms, dtype=np.float64)
    axes = tuple(range(terms.ndim - n, terms.ndim))
    m = math.prod(terms.shape[terms.ndim - n :])
    expected = terms.sum(axis=axes)
    tol = RTOL * np.abs(expected) + m * F32_EPS * np.abs(terms).sum(axis=axes)
    err = np.abs(np.asarray(actual, dtype=np.float64) - expected)
    assert err.shape == expected.shape
    assert np.all(err <= tol), f"|sum error| {err} exceeds {tol}"


# ------------------------------------------------------------ numerical checks


@all_families
@SETTINGS
@given(data=st.data())
def test_samples_lie_in_support(family, data):
    out = _run(family, _case(data, family))
    for arg, ok in out["args_ok"].items():
        assert ok, f"the drawn {arg} is outside its constraint"
    assert out["draws"].shape == SAMPLE + BATCH + family.event_shape
    assert out["in_support"].shape == SAMPLE + BATCH
    assert out["in_support"].all(), f"draws outside the support: {out['draws']}"


@all_families
@SETTINGS
@given(data=st.data())
def test_log_prob_is_finite_at_samples(family, data):
    out = _run(family, _case(data, family))
    lp = out["lp"]
    assert lp.shape == SAMPLE + BATCH
    assert np.issubdtype(lp.dtype, np.floating)
    assert np.all(np.isfinite(lp)), f"log_prob {lp} at draws {out['draws']}"


@all_families
@SETTINGS
@given(data=st.data())
def test_to_event_sums_log_prob_over_reinterpreted_dims(family, data):
    out = _run(family, _case(data, family))
    for n, (lp, ok) in enumerate(zip(out["lp_ind"], out["in_support_ind"])):
        kept = SAMPLE + BATCH[: len(BATCH) - n]
        assert lp.shape == ok.shape == kept
        assert ok.all()
        _assert_sum_close(lp, out["lp"], n)


@all_families
@SETTINGS
@given(data=st.data())
def test_expand_broadcasts_log_prob(family, data):
    out = _run(family, _case(data, family))
    s = out["term_scale"]
    # The draws' SAMPLE dim lines up with the new leading batch dim of EXPANDED.
    _assert_close(out["lp_expanded"], np.broadcast_to(out["lp"], EXPANDED), s)
    # ExpandedDistribution (how plates expand) scores under the unexpanded base.
    _assert_close(out["lp_lazily_expanded"], np.broadcast_to(out["lp"], EXPANDED), s)
    lp_ind = out["lp_ind"][1]  # to_event(1): batch (1,), broadcast to (2, 3)
    _assert_close(out["lp_ind_expanded"], np.broadcast_to(lp_ind, EXPANDED[:-1]), s)


@all_families
@SETTINGS
@given(data=st.data())
def test_mask_keeps_log_prob_where_true(family, data):
    mask = data.draw(hnp.arrays(np.bool_, BATCH), label="mask")
    out = _run(family, _case(data, family), mask)
    lp, keep = out["lp_masked"], np.broadcast_to(mask, SAMPLE + BATCH)
    assert lp.shape == out["lp_masked_out"].shape == SAMPLE + BATCH
    np.testing.assert_array_equal(lp[~keep], 0.0)
    np.testing.assert_array_equal(lp[keep], out["lp"][keep])
    np.testing.assert_array_equal(out["lp_masked_out"], 0.0)  # mask(False)


@pytest.mark.parametrize("family", REPARAMETERIZED, ids=repr)
@SETTINGS
@given(data=st.data())
def test_reparameterized_samples_have_finite_gradients(family, data):
    case = _case(data, family)
    grads = _run(family, case)["grads"]
    assert set(grads) == set(case.full)
    for name, g in grads.items():
        assert g.shape == case.full[name].shape, name
        assert np.all(np.isfinite(g)), f"d sum(sample) / d {name} = {g}"


# ---------------------------------------------------------------- shape checks


@all_families
@SETTINGS
@given(data=st.data())
def test_shapes_at_drawn_batch_and_sample_shapes(family, data):
    batch = data.draw(BATCH_SHAPES, label="batch_shape")
    sample = data.draw(SAMPLE_SHAPES, label="sample_shape")
    case = _case(data, family, batch)
    n = data.draw(st.integers(0, len(batch)), label="n")
    new = data.draw(_expanded(batch), label="expanded batch_shape")
    mask = data.draw(
        st.one_of(
            st.booleans(),
            _broadcasting_to(batch).flatmap(lambda s: hnp.arrays(np.bool_, s)),
        ),
        label="mask",
    )
    split = len(batch) - n
    # Python ints (a Binomial total_count) stay static, as a caller passes them.
    static = {k: v for k, v in case.params.items() if isinstance(v, int)}
    arrays = {k: v for k, v in case.params.items() if k not in static}
    seen: dict[str, Any] = {}

    def run(arrays, full, key):
        d = family.build({**arrays, **static})
        x = d.sample(key, sample)
        ind, e, masked = d.to_event(n), d.expand(new), d.mask(mask)
        lazy = dist.ExpandedDistribution(d, new)
        for name, dd in zip(
            ["d", "ind", "e", "masked", "lazy"], [d, ind, e, masked, lazy]
        ):
            seen[name] = (dd.batch_shape, dd.event_shape, dd.has_rsample)
        seen["unmasked"] = d.mask(True) is d and d.to_event(0) is d
        seen["e_draws"] = e.shape(sample)
        xe = jnp.zeros(e.shape(sample), x.dtype)  # a value shaped like e's draws
        return {
            "leaves": jax.tree_util.tree_leaves(d),
            "leaves_full": jax.tree_util.tree_leaves(family.build(full)),
            "x": x,
            "in_support": d.support.check(x),
            "lp": d.log_prob(x),
            "lp_ind": ind.log_prob(x),
            "in_support_ind": ind.support.check(x),
            "lp_e": e.log_prob(xe),
            "lp_masked": masked.log_prob(x),
            "x_lazy": (x_lazy := lazy.sample(key, sample)),
            "in_support_lazy": lazy.support.check(x_lazy),
            "lp_lazy": lazy.log_prob(x_lazy),
        }

    out = jax.eval_shape(run, arrays, case.full, case.key)  # compiles nothing
    event, rsample = family.event_shape, family.cls.has_rsample
    assert seen["d"] == (batch, event, rsample)
    assert seen["unmasked"]
    assert seen["ind"] == (batch[:split], batch[split:] + event, rsample)
    assert seen["e"] == seen["lazy"] == (new, event, rsample)
    assert seen["masked"] == (batch, event, rsample)
    # Parameters of any broadcasting shapes are stored broadcast to the batch.
    assert [a.shape for a in out["leaves"]] == [a.shape for a in out["leaves_full"]]
    assert out["x"].shape == sample + batch + event
    assert out["in_support"].shape == out["lp"].shape == out["lp_masked"].shape
    assert out["lp"].shape == sample + batch
    assert out["lp_ind"].shape == out["in_support_ind"].shape == sample + batch[:split]
    assert seen["e_draws"] == sample + new + event
    assert out["lp_e"].shape == sample + new
    assert out["x_lazy"].shape == sample + new + event
    assert out["in_support_lazy"].shape == out["lp_lazy"].shape == sample + new
