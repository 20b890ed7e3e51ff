"""log_prob, mean and variance of every family against scipy.stats (float32).

Parameters have batch shape (2, 3) built by broadcasting a (2, 1) and a (3,)
array; values have shape (4, 2, 3) (+ event), so broadcasting of parameters and
of values against the batch shape is exercised everywhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as ss
import scipy.stats as st

import jsvi.distributions as dist

RTOL = 1e-5
rng = np.random.default_rng(0)


def f32(x):
    return np.asarray(x, dtype=np.float32)


LOC = f32([[-1.0], [0.5]])
SCALE = f32([0.5, 1.0, 2.0])
DF = f32([0.8, 1.5, 30.0])  # undefined mean, infinite variance, finite
A = f32([[0.5], [2.0]])
B = f32([0.7, 1.0, 3.0])
S2 = f32(np.abs(LOC) + SCALE)  # positive, shape (2, 3)
X = f32(rng.normal(size=(4, 2, 3)) * 2)
POS = f32(rng.gamma(2.0, size=(4, 2, 3)))
UNIT = f32(rng.uniform(0.05, 0.95, size=(4, 2, 3)))
LOW, HIGH = f32([[-3.0], [0.0]]), f32([1.0, 2.0, 4.0])
IN_UNIFORM = f32(LOW + (HIGH - LOW) * UNIT)
P = f32([[0.2], [0.7]])
COUNTS = np.array([1, 5, 10])
K_BINOM = rng.binomial(COUNTS, 0.5, size=(4, 2, 3))
BITS = rng.integers(0, 2, size=(4, 2, 3))
COUNTS_POIS = rng.poisson(2.0, size=(4, 2, 3))

# name -> (distribution, value, frozen scipy distribution with the same batch)
UNIVARIATE = {
    "Normal": (dist.Normal(LOC, SCALE), X, st.norm(LOC, SCALE)),
    "LogNormal": (
        dist.LogNormal(LOC, SCALE),
        POS,
        st.lognorm(SCALE, scale=np.exp(LOC)),
    ),
    "HalfNormal": (dist.HalfNormal(S2), POS, st.halfnorm(scale=S2)),
    "HalfCauchy": (dist.HalfCauchy(S2), POS, st.halfcauchy(scale=S2)),
    "Cauchy": (dist.Cauchy(LOC, SCALE), X, st.cauchy(LOC, SCALE)),
    "Laplace": (dist.Laplace(LOC, SCALE), X, st.laplace(LOC, SCALE)),
    "StudentT": (dist.StudentT(DF, LOC, SCALE), X, st.t(np.float64(DF), LOC, SCALE)),
    "Uniform": (dist.Uniform(LOW, HIGH), IN_UNIFORM, st.uniform(LOW, HIGH - LOW)),
    "Beta": (dist.Beta(A, B), UNIT, st.beta(A, B)),
    "Gamma": (dist.Gamma(A, B), POS, st.gamma(A, scale=1 / B)),
    "Exponential": (dist.Exponential(S2), POS, st.expon(scale=1 / S2)),
    "Bernoulli(probs)": (
        dist.Bernoulli(probs=P * B / 3),
        BITS,
        st.bernoulli(P * B / 3),
    ),
    "Bernoulli(logits)": (
        dist.Bernoulli(logits=LOC * B),
        BITS,
        st.bernoulli(ss.expit(np.float64(LOC * B))),
    ),
    "Binomial(probs)": (
        dist.Binomial(COUNTS, probs=P),
        K_BINOM,
        st.binom(COUNTS, np.broadcast_to(P, (2, 3))),
    ),
    "Binomial(logits)": (
        dist.Binomial(COUNTS, logits=LOC),
        K_BINOM,
        st.binom(COUNTS, np.broadcast_to(ss.expit(np.float64(LOC)), (2, 3))),
    ),
    "Poisson": (dist.Poisson(A * B * 2), COUNTS_POIS, st.poisson(A * B * 2)),
}


@jax.jit
def _evaluate(d, value):
    return d.log_prob(value), d.mean, d.variance


@pytest.fixture(scope="module")
def univariate_results():
    """All univariate cases evaluated in one compiled program."""
    cases = {name: (d, value) for name, (d, value, _) in UNIVARIATE.items()}
    return jax.jit(lambda cases: {n: _evaluate(d, v) for n, (d, v) in cases.items()})(
        cases
    )


@pytest.mark.parametrize("name", list(UNIVARIATE))
def test_univariate_log_prob_mean_variance_match_scipy(name, univariate_results):
    d, value, ref = UNIVARIATE[name]
    assert d.batch_shape == (2, 3) and d.event_shape == ()
    lp, mean, var = univariate_results[name]
    pdf = ref.logpmf if hasattr(ref, "logpmf") else ref.logpdf
    assert lp.shape == (4, 2, 3)
    np.testing.assert_allclose(lp, pdf(value), rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(mean, ref.mean() * np.ones((2, 3)), rtol=RTOL)
    np.testing.assert_allclose(var, ref.var() * np.ones((2, 3)), rtol=RTOL)


def test_value_broadcasts_against_batch_shape_eagerly():
    d = dist.Normal(LOC, SCALE)
    lp = d.log_prob(X[0, 0])  # shape (3,) against batch (2, 3)
    assert lp.shape == (2, 3)
    np.testing.assert_allclose(lp, st.norm(LOC, SCALE).logpdf(X[0, 0]), rtol=RTOL)
    lp = d.log_prob(X[:, :, None, :1])  # (4, 2, 1, 1) -> (4, 2, 2, 3)
    assert lp.shape == (4, 2, 2, 3)


def test_normal_family_log_prob_is_finite_for_tiny_scales():
    # log(scale), not log(scale**2): scale**2 underflows to 0 in float32.
    scale = f32([1e-25, 1e-30])
    lp = jax.jit(
        lambda s: (
            dist.Normal(0.0, s).log_prob(0.0),
            dist.LogNormal(0.0, s).log_prob(1.0),
            dist.HalfNormal(s).log_prob(0.0),
        )
    )(scale)
    expected = -np.log(np.float64(scale)) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(lp[0], expected, rtol=RTOL)
    np.testing.assert_allclose(lp[1], expected, rtol=RTOL)
    np.testing.assert_allclose(lp[2], expected + np.log(2.0), rtol=RTOL)


def test_enumerated_values_broadcast_for_discrete_families():
    for d in [
        dist.Bernoulli(probs=P * B / 3),
        dist.Binomial(COUNTS, probs=P),
        dist.Categorical(logits=np.zeros((2, 3, 4), np.float32)),
    ]:
        values = np.arange(2).reshape(2, 1, 1)
        assert _evaluate(d, values)[0].shape == (2, 2, 3)


CAT_P = f32(rng.dirichlet(np.ones(4), size=(2, 3)))
CAT_LOGITS = f32(rng.normal(size=(2, 3, 4)))
CAT_VALUES = rng.integers(0, 4, size=(5, 2, 3))


@pytest.mark.parametrize("param", ["probs", "logits"])
def test_categorical_and_one_hot(param):
    arg = CAT_P if param == "probs" else CAT_LOGITS
    log_p = np.log(CAT_P) if param == "probs" else np.asarray(jax.nn.log_softmax(arg))
    expected = np.take_along_axis(
        np.broadcast_to(log_p, (5, 2, 3, 4)), CAT_VALUES[..., None], -1
    )[..., 0]
    d = dist.Categorical(**{param: arg})
    assert d.batch_shape == (2, 3) and d.event_shape == ()
    np.testing.assert_allclose(_evaluate(d, CAT_VALUES)[0], expected, rtol=RTOL)
    d = dist.OneHotCategorical(**{param: arg})
    assert d.batch_shape == (2, 3) and d.event_shape == (4,)
    lp, mean, var = _evaluate(d, np.eye(4, dtype=np.int32)[CAT_VALUES])
    np.testing.assert_allclose(lp, expected, rtol=RTOL)
    np.testing.assert_allclose(mean, np.exp(log_p), rtol=RTOL)
    np.testing.assert_allclose(var, np.exp(log_p) * (1 - np.exp(log_p)), rtol=RTOL)


def test_dirichlet():
    conc = f32(rng.gamma(2.0, size=(2, 3)) + 0.2)
    values = f32(rng.dirichlet(np.ones(3), size=(4, 2)))
    d = dist.Dirichlet(conc)
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    lp, mean, var = _evaluate(d, values)
    expected = [
        [st.dirichlet(conc[j]).logpdf(values[i, j]) for j in range(2)] for i in range(4)
    ]
    np.testing.assert_allclose(lp, expected, rtol=RTOL)
    for j in range(2):
        np.testing.assert_allclose(mean[j], st.dirichlet(conc[j]).mean(), rtol=RTOL)
        np.testing.assert_allclose(var[j], st.dirichlet(conc[j]).var(), rtol=RTOL)


def _random_cov(n, batch=()):
    m = rng.normal(size=batch + (n, n))
    return f32(m @ np.swapaxes(m, -1, -2) + n * np.eye(n))


def _mvn_logpdf(values, loc, cov):
    loc = np.broadcast_to(loc, values.shape)
    cov = np.broadcast_to(cov, values.shape + values.shape[-1:])
    out = np.empty(values.shape[:-1])
    for idx in np.ndindex(out.shape):
        out[idx] = st.multivariate_normal(loc[idx], cov[idx]).logpdf(values[idx])
    return out


@pytest.mark.parametrize(
    "param", ["covariance_matrix", "precision_matrix", "scale_tril"]
)
def test_multivariate_normal_parametrizations_and_batch_broadcasting(param):
    cov = _random_cov(3, (2,))  # batch (2,) of matrices against loc batch (4, 1)
    loc = f32(rng.normal(size=(4, 1, 3)))
    arg = {
        "covariance_matrix": cov,
        "precision_matrix": np.linalg.inv(cov),
        "scale_tril": np.linalg.cholesky(cov),
    }[param]
    d = dist.MultivariateNormal(loc, **{param: arg})
    assert d.batch_shape == (4, 2) and d.event_shape == (3,)
    values = f32(rng.normal(size=(5, 4, 2, 3)))
    lp, mean, var = _evaluate(d, values)
    np.testing.assert_allclose(lp, _mvn_logpdf(values, loc, cov), rtol=1e-4)
    np.testing.assert_allclose(mean, np.broadcast_to(loc, (4, 2, 3)))
    diag = np.diagonal(cov, axis1=-2, axis2=-1)
    np.testing.assert_allclose(var, np.broadcast_to(diag, (4, 2, 3)), rtol=1e-4)
    np.testing.assert_allclose(
        d.covariance_matrix, np.broadcast_to(cov, (4, 2, 3, 3)), rtol=1e-4
    )
    np.testing.assert_allclose(
        d.precision_matrix @ d.covariance_matrix,
        np.broadcast_to(np.eye(3), (4, 2, 3, 3)),
        atol=1e-4,
    )


def test_multivariate_normal_scalar_loc_broadcasts():
    d = dist.MultivariateNormal(0.0, scale_tril=np.eye(2, dtype=np.float32))
    assert d.event_shape == (2,) and d.batch_shape == ()
    np.testing.assert_allclose(d.log_prob(np.zeros(2)), -np.log(2 * np.pi), rtol=RTOL)


def test_low_rank_multivariate_normal_matches_full_covariance():
    loc = f32(rng.normal(size=(2, 4)))
    factor = f32(rng.normal(size=(4, 2)))
    diag = f32(rng.gamma(2.0, size=(3, 1, 4)) + 0.1)
    d = dist.LowRankMultivariateNormal(loc, factor, diag)
    assert d.batch_shape == (3, 2) and d.event_shape == (4,)
    cov = factor @ factor.T + diag[..., None] * np.eye(4)  # (3, 1, 4, 4)
    values = f32(rng.normal(size=(5, 3, 2, 4)))
    lp, mean, var = _evaluate(d, values)
    np.testing.assert_allclose(lp, _mvn_logpdf(values, loc, cov), rtol=1e-4)
    np.testing.assert_allclose(
        var, np.broadcast_to(np.diagonal(cov, 0, -2, -1), (3, 2, 4)), rtol=1e-5
    )
    np.testing.assert_allclose(
        d.covariance_matrix, np.broadcast_to(cov, (3, 2, 4, 4)), rtol=1e-5
    )
    np.testing.assert_allclose(
        d.precision_matrix,
        np.broadcast_to(np.linalg.inv(cov), (3, 2, 4, 4)),
        rtol=1e-3,
        atol=1e-5,
    )


def test_delta():
    v = f32([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    d = dist.Delta(v, log_density=f32([0.5, -1.0, 2.0]))
    value = v.copy()
    value[1, 2] = 0.0
    np.testing.assert_allclose(
        d.log_prob(value), [[0.5, -1.0, 2.0], [0.5, -1.0, -np.inf]]
    )
    d = dist.Delta(v, event_dim=1)
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    np.testing.assert_allclose(d.log_prob(value), [0.0, -np.inf])
    np.testing.assert_allclose(d.mean, v)
    np.testing.assert_allclose(d.variance, np.zeros((2, 3)))


@jax.jit
def _cdf_round_trip(d, q):
    x = d.icdf(q)
    return x, d.cdf(x)


def test_cdf_icdf_round_trip_against_scipy():
    q = f32([0.1, 0.5, 0.9])
    for d, ref in [
        (dist.Normal(0.5, 2.0), st.norm(0.5, 2.0)),
        (dist.LogNormal(0.5, 0.7), st.lognorm(0.7, scale=np.exp(0.5))),
        (dist.Exponential(2.0), st.expon(scale=0.5)),
        (dist.Laplace(1.0, 2.0), st.laplace(1.0, 2.0)),
        (dist.Cauchy(1.0, 2.0), st.cauchy(1.0, 2.0)),
        (dist.HalfNormal(2.0), st.halfnorm(scale=2.0)),
        (dist.HalfCauchy(2.0), st.halfcauchy(scale=2.0)),
        (dist.Uniform(-1.0, 3.0), st.uniform(-1.0, 4.0)),
    ]:
        x, q_back = _cdf_round_trip(d, q)
        np.testing.assert_allclose(x, ref.ppf(q), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(q_back, q, rtol=1e-4)


def test_gradients_of_log_prob_at_integer_values():
    # Integer observations must not leak float0 tangents into xlogy's jvp.
    def total(p):
        k = np.array([0, 1, 1])
        return (
            dist.Bernoulli(p).log_prob(k).sum()
            + dist.Binomial(3, p).log_prob(k).sum()
            + dist.Poisson(p * 4).log_prob(k).sum()
            + dist.Gamma(p * 4, 1.0).log_prob(np.array([1, 2])).sum()
            + dist.Beta(p * 4, 2.0).log_prob(np.array([0.5], np.float32)).sum()
            + dist.Dirichlet(jnp.full(2, p * 4)).log_prob(np.array([0.5, 0.5])).sum()
        )

    eps = 1e-3
    grad, upper, lower = jax.jit(
        lambda p: (jax.grad(total)(p), total(p + eps), total(p - eps))
    )(0.6)
    np.testing.assert_allclose(grad, (upper - lower) / (2 * eps), rtol=1e-2)


def test_log_beta_derivative_is_digamma_difference():
    """``log_beta``'s own derivative equals ``digamma(a) - digamma(a + b)`` (and the
    same for ``b``) from scipy, small and large arguments alike, broadcast, and to
    second order, and its value is ``betaln``'s."""
    from jsvi.distributions.continuous import log_beta

    a = jnp.array([0.3, 2.0, 15.0, 7.5, 1e4])
    b = jnp.array([0.7, 3.0, 15.0, 40.0, 2e4])
    np.testing.assert_allclose(log_beta(a, b), ss.betaln(a, b), rtol=1e-6)
    ga, gb = jax.vmap(jax.grad(log_beta, argnums=(0, 1)))(a, b)
    np.testing.assert_allclose(ga, ss.digamma(a) - ss.digamma(a + b), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gb, ss.digamma(b) - ss.digamma(a + b), rtol=1e-4, atol=1e-5)
    # a scalar against a batch
    gs = jax.grad(lambda s: jnp.sum(log_beta(s, b)))(2.0)
    np.testing.assert_allclose(gs, np.sum(ss.digamma(2.0) - ss.digamma(2.0 + b)), rtol=1e-5)
    # second derivative: trigamma(a) - trigamma(a + b)
    h = jax.grad(jax.grad(log_beta))(2.0, 3.0)
    np.testing.assert_allclose(h, ss.polygamma(1, 2.0) - ss.polygamma(1, 5.0), rtol=1e-5)
    # and it takes one digamma where differentiating betaln takes four
    jaxpr = str(jax.make_jaxpr(jax.grad(log_beta, argnums=(0, 1)))(2.0, 3.0))
    assert jaxpr.count("digamma") == 1
