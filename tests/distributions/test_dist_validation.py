"""Argument and support validation: errors, switches, and zero cost under jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi.distributions as dist
from jsvi.errors import ArgumentError, ShapeError, SupportError

BAD_COV = np.array([[1.0, 2.0], [2.0, 1.0]], dtype=np.float32)  # not PD

# (constructor, name of the invalid argument)
BAD_ARGS = [
    (lambda: dist.Normal(0.0, -1.0), "scale"),
    (lambda: dist.Normal(np.nan, 1.0), "loc"),
    (lambda: dist.LogNormal(0.0, np.array([1.0, 0.0])), "scale"),
    (lambda: dist.Beta(1.0, 0.0), "concentration0"),
    (lambda: dist.Gamma(-1.0, 1.0), "concentration"),
    (lambda: dist.Exponential(-2.0), "rate"),
    (lambda: dist.StudentT(0.0), "df"),
    (lambda: dist.Uniform(2.0, 1.0), "high"),
    (lambda: dist.Dirichlet(np.array([1.0, -1.0])), "concentration"),
    (lambda: dist.MultivariateNormal(np.zeros(2), BAD_COV), "covariance_matrix"),
    (lambda: dist.MultivariateNormal(np.zeros(2), scale_tril=BAD_COV), "scale_tril"),
    (
        lambda: dist.LowRankMultivariateNormal(
            np.zeros(2), np.ones((2, 1)), -np.ones(2)
        ),
        "cov_diag",
    ),
    (lambda: dist.Bernoulli(1.5), "probs"),
    (lambda: dist.Binomial(2.5, 0.5), "total_count"),
    (lambda: dist.Categorical(np.array([0.5, 0.6])), "probs"),
    (lambda: dist.Poisson(-1.0), "rate"),
    (lambda: dist.HalfCauchy(0.0), "scale"),
    (lambda: dist.Chi2(-1.0), "df"),
    (lambda: dist.InverseGamma(-1.0, 1.0), "concentration"),
    (lambda: dist.InverseGamma(1.0, 0.0), "rate"),
    (lambda: dist.Gumbel(0.0, -1.0), "scale"),
    (lambda: dist.Logistic(np.inf, 1.0), "loc"),
    (lambda: dist.Weibull(1.0, -2.0), "concentration"),
    (lambda: dist.Pareto(-1.0, 2.0), "scale"),
    (lambda: dist.Pareto(1.0, 0.0), "alpha"),
    (lambda: dist.Kumaraswamy(1.0, -0.5), "concentration0"),
    (lambda: dist.VonMises(0.0, -1.0), "concentration"),
    (lambda: dist.AsymmetricLaplace(0.0, 1.0, -1.0), "asymmetry"),
    (lambda: dist.SoftLaplace(0.0, 0.0), "scale"),
    (lambda: dist.TruncatedNormal(0.0, -1.0, low=0.0), "scale"),
    (lambda: dist.TruncatedNormal(0.0, 1.0, 1.0, 0.5), "high"),
    (lambda: dist.LKJCholesky(3, -1.0), "concentration"),
    (lambda: dist.LKJ(3, 0.0), "concentration"),
    (lambda: dist.MultivariateStudentT(-1.0, 0.0, np.eye(2)), "df"),
    (lambda: dist.MultivariateStudentT(3.0, 0.0, BAD_COV), "scale_tril"),
    (lambda: dist.GaussianRandomWalk(-1.0, 3), "scale"),
    (lambda: dist.Geometric(1.5), "probs"),
    (lambda: dist.DiscreteUniform(0.5, 3), "low"),
    (lambda: dist.DiscreteUniform(3, 1), "high"),
    (lambda: dist.Multinomial(-1, np.ones(3) / 3), "total_count"),
    (lambda: dist.Multinomial(3, np.array([0.5, 0.6])), "probs"),
    (lambda: dist.BetaBinomial(1.0, 1.0, 2.5), "total_count"),
    (lambda: dist.BetaBinomial(-1.0, 1.0, 2), "concentration1"),
    (lambda: dist.DirichletMultinomial(np.array([1.0, -1.0]), 3), "concentration"),
    (lambda: dist.GammaPoisson(0.0, 1.0), "concentration"),
    (lambda: dist.NegativeBinomialProbs(2.0, 1.5), "probs"),
    (lambda: dist.NegativeBinomialLogits(-2.0, 0.0), "total_count"),
    (lambda: dist.NegativeBinomial2(-1.0, 2.0), "mean"),
    (lambda: dist.ZeroInflatedPoisson(1.5, 2.0), "gate"),
    (lambda: dist.ZeroInflatedPoisson(-0.1, 2.0), "gate"),
    (lambda: dist.ZeroInflatedPoisson(0.5, -2.0), "rate"),
    (lambda: dist.ZeroInflatedNegativeBinomial2(1.0, 2.0, gate=2.0), "gate"),
    (lambda: dist.ZeroInflatedDistribution(dist.Poisson(1.0), gate=-0.5), "gate"),
    (lambda: dist.RelaxedBernoulli(-1.0, probs=0.5), "temperature"),
    (lambda: dist.RelaxedBernoulli(1.0, probs=1.5), "probs"),
    (lambda: dist.RelaxedOneHotCategorical(0.0, probs=np.ones(3) / 3), "temperature"),
]


@pytest.mark.parametrize("make, arg", BAD_ARGS, ids=[a for _, a in BAD_ARGS])
def test_invalid_arguments_raise_naming_the_argument(make, arg):
    with pytest.raises(ArgumentError, match=f"argument '{arg}' must satisfy"):
        make()


# (constructor, a fragment of the error, naming the argument and the fix)
BAD_STRUCTURE = [
    (
        lambda: dist.LKJCholesky(1, 1.0),
        "argument 'dimension' must be a Python int >= 2",
    ),
    (lambda: dist.LKJ(2.5, 1.0), "argument 'dimension' must be a Python int >= 2"),
    (lambda: dist.GaussianRandomWalk(1.0, 0), "argument 'num_steps' must be"),
    (lambda: dist.MultivariateStudentT(3.0, np.zeros(2)), "scale_tril must be given"),
    (lambda: dist.Geometric(0.5, 0.0), "exactly one of probs and logits"),
    (
        lambda: dist.ZeroInflatedDistribution(dist.Poisson(1.0)),
        "gate and gate_logits",
    ),
    (
        lambda: dist.ZeroInflatedDistribution(dist.Normal(0.0, 1.0), gate=0.5),
        "base_dist must be a jsvi Distribution over counts",
    ),
    (
        lambda: dist.MixtureSameFamily(
            dist.Normal(0.0, 1.0), dist.Normal(np.zeros(2), 1.0)
        ),
        "mixing_distribution must be a jsvi Categorical",
    ),
    (
        lambda: dist.MixtureSameFamily(
            dist.Categorical(np.ones(3) / 3), dist.Normal(np.zeros(2), 1.0)
        ),
        "K = 3 components on its rightmost batch dim",
    ),
    (
        lambda: dist.MixtureGeneral(
            dist.Categorical(np.ones(2) / 2), [dist.Normal(0.0, 1.0)]
        ),
        "component_distributions must be 2",
    ),
    (
        lambda: dist.Multinomial(np.array([1, 2, 3]), np.ones((2, 3)) / 3),
        "total_count of shape (3,) does not broadcast",
    ),
]


@pytest.mark.parametrize(
    "make, fragment", BAD_STRUCTURE, ids=[f for _, f in BAD_STRUCTURE]
)
def test_structural_errors_name_the_argument(make, fragment):
    with pytest.raises((ArgumentError, ShapeError)) as info:
        make()
    assert fragment in str(info.value)


def test_argument_error_message_format():
    with pytest.raises(ArgumentError) as info:
        dist.Normal(0.0, np.array([1.0, -1.0]))
    assert str(info.value) == (
        "Normal: argument 'scale' must satisfy positive, got [-1.]. Pass values inside "
        "the support, or validate_args=False to skip this check."
    )
    assert isinstance(info.value, ValueError)


# (distribution, a value outside its support)
BAD_VALUES = [
    (dist.Normal(0.0, 1.0), np.inf),
    (dist.HalfNormal(1.0), -1.0),
    (dist.Beta(2.0, 2.0), 1.5),
    (dist.Gamma(2.0, 1.0), 0.0),
    (dist.Uniform(0.0, np.array([1.0, 2.0])), np.array([0.5, 2.5])),
    (dist.Dirichlet(np.ones(3)), np.array([0.5, 0.5, 0.5])),
    (dist.Bernoulli(0.3), 0.5),
    (dist.Binomial(5, 0.3), 6),
    (dist.Categorical(np.ones(3) / 3), 3),
    (dist.OneHotCategorical(np.ones(3) / 3), np.array([1, 1, 0])),
    (dist.Poisson(2.0), 1.5),
    (dist.Poisson(2.0), -1),
    (dist.Normal(np.zeros(3), 1.0).to_event(1), np.array([0.0, np.nan, 1.0])),
    (dist.TransformedDistribution(dist.Normal(0.0, 1.0), []), np.inf),
    (dist.Pareto(2.0, 3.0), 1.5),
    (dist.VonMises(0.0, 1.0), 4.0),
    (dist.TruncatedNormal(0.0, 1.0, -1.0, 1.0), 1.5),
    (dist.LKJCholesky(2, 1.0), np.array([[1.0, 0.0], [0.5, 0.5]])),
    (dist.LKJ(2, 1.0), np.array([[1.0, 0.5], [0.4, 1.0]])),
    (dist.Multinomial(3, np.ones(2) / 2), np.array([1, 1])),
    (dist.DiscreteUniform(0, 3), 4),
    (dist.BetaBinomial(1.0, 1.0, 3), 4),
    (dist.ZeroInflatedPoisson(0.3, 1.0), 1.5),
    (dist.RelaxedOneHotCategorical(1.0, np.ones(3) / 3), np.array([0.5, 0.6, 0.1])),
]


@pytest.mark.parametrize(
    "d, value",
    BAD_VALUES,
    ids=[f"{type(d).__name__}-{i}" for i, (d, _) in enumerate(BAD_VALUES)],
)
def test_out_of_support_values_raise_support_error(d, value):
    with pytest.raises(
        SupportError, match=f"{type(d).__name__}.log_prob: value"
    ) as info:
        d.log_prob(value)
    assert repr(d.support) in str(info.value)


def test_support_error_names_the_offending_value():
    with pytest.raises(
        SupportError, match=r"value \[-1.\] is outside the support positive"
    ):
        dist.HalfNormal(1.0).log_prob(np.array([0.5, -1.0, 2.0]))


def test_value_shape_mismatch_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"value of shape \(4,\) does not broadcast"):
        dist.Normal(np.zeros(3), 1.0).log_prob(np.zeros(4))
    with pytest.raises(ShapeError, match="fewer dims than event_shape"):
        dist.Dirichlet(np.ones(3)).log_prob(0.5)


def test_validate_args_false_skips_all_checks():
    d = dist.Normal(0.0, -1.0, validate_args=False)
    assert d.log_prob(0.0).shape == ()
    assert np.isfinite(dist.Beta(2.0, 2.0, validate_args=False).log_prob(0.5))
    dist.HalfNormal(1.0, validate_args=False).log_prob(-1.0)
    dist.Poisson(2.0, validate_args=False).log_prob(1.5)


def test_enable_validation_sets_the_default():
    assert dist.validation_enabled()
    try:
        dist.enable_validation(False)
        d = dist.Normal(0.0, -1.0)
        assert not d._validate_args
        d.log_prob(np.inf)
        with pytest.raises(ArgumentError):
            dist.Normal(0.0, -1.0, validate_args=True)  # explicit flag wins
    finally:
        dist.enable_validation(True)
    with pytest.raises(ArgumentError):
        dist.Normal(0.0, -1.0)


def test_exactly_one_parametrization():
    with pytest.raises(ArgumentError, match="exactly one of probs and logits"):
        dist.Bernoulli(0.5, 0.0)
    with pytest.raises(ArgumentError, match="exactly one of probs and logits"):
        dist.Categorical()
    with pytest.raises(ArgumentError, match="exactly one of covariance_matrix"):
        dist.MultivariateNormal(np.zeros(2), np.eye(2), scale_tril=np.eye(2))
    with pytest.raises(ShapeError, match="do not broadcast"):
        dist.Normal(np.zeros(3), np.ones(2))


def test_no_python_checks_under_jit():
    lp = jax.jit(lambda s: dist.Normal(0.0, s).log_prob(1.0))(-1.0)
    assert lp.shape == ()
    lp = jax.jit(lambda x: dist.HalfNormal(1.0).log_prob(x))(-1.0)
    assert lp == -np.inf
    lp = jax.vmap(lambda x: dist.Poisson(2.0).log_prob(x))(jnp.array([1.5, 2.0]))
    assert lp.shape == (2,)


def test_validation_adds_no_ops_when_traced_or_disabled():
    def model(validate):
        def f(loc, x):
            return dist.Normal(loc, 1.0, validate_args=validate).log_prob(x)

        return str(jax.make_jaxpr(f)(0.0, 1.0))

    assert model(True) == model(False)


def test_validation_flags_work_concrete_and_traced():
    d = dist.Normal(np.array([0.0, np.inf]), np.array([1.0, -1.0]), validate_args=False)
    flags = d.validation_flags(np.array([0.0, np.nan]))
    assert set(flags) == {"loc", "scale", "value"}
    np.testing.assert_array_equal(flags["loc"], [True, False])
    np.testing.assert_array_equal(flags["scale"], [True, False])
    np.testing.assert_array_equal(flags["value"], [True, False])

    @jax.jit
    def all_ok(loc, scale, value):
        flags = dist.Normal(loc, scale).validation_flags(value)
        return jnp.all(jnp.stack([jnp.all(f) for f in flags.values()]))

    assert bool(all_ok(0.0, 1.0, 0.5))
    assert not bool(all_ok(0.0, -1.0, 0.5))
    assert not bool(all_ok(0.0, 1.0, jnp.inf))

    masked = dist.HalfNormal(np.ones(2)).mask(np.array([True, False]))
    np.testing.assert_array_equal(
        masked.validation_flags(np.array([1.0, -1.0]))["value"], [1, 1]
    )
    ind = dist.Dirichlet(np.ones((2, 3)), validate_args=False).to_event(1)
    assert ind.validation_flags(np.full((2, 3), 0.5))["value"].shape == ()
    assert dist.Binomial(3, 0.5).validation_flags(np.array([1, 4]))[
        "value"
    ].tolist() == [True, False]


def test_discrete_values_must_be_integral():
    d = dist.Binomial(np.array([3.0, 5.0]), 0.5)
    d.log_prob(np.array([3, 5]))
    d.log_prob(np.array([3.0, 5.0]))
    with pytest.raises(SupportError):
        d.log_prob(np.array([2.5, 1.0]))
    with pytest.raises(SupportError):
        d.log_prob(np.array([4, 1]))  # above total_count in the first batch entry
