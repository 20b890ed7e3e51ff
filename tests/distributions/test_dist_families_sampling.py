"""Samplers of the new families: KS tests of continuous draws (alpha = 1e-4),
frequencies of discrete draws against the pmf (within 4 standard errors), Monte
Carlo means against ``mean``, pathwise gradients against analytic derivatives
(within 4 standard errors), and the relaxed families at temperatures going to 0.

Every family is drawn in one compiled program (the samplers' compiles dominate).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as ss
import scipy.stats as st

import jsvi.distributions as dist
from jsvi.testing import assert_mc_close

pytestmark = pytest.mark.statistical

N = 2000
ALPHA = 1e-4  # KS significance level
Z = 4.0


def f32(x):
    return np.asarray(x, dtype=np.float32)


L2 = f32([[1.0, 0.0], [0.6, 0.8]])  # scale_tril of [[1, .6], [.6, 1]]
NORMAL_MIX = dist.MixtureSameFamily(
    dist.Categorical(f32([0.3, 0.7])), dist.Normal(f32([-1.0, 2.0]), f32([0.5, 1.0]))
)
GENERAL_MIX = dist.MixtureGeneral(
    dist.Categorical(f32([0.4, 0.6])), [dist.Normal(0.0, 1.0), dist.Gumbel(1.0, 0.5)]
)


def _wrapped(x, loc):
    return np.remainder(np.float64(x) - loc + np.pi, 2 * np.pi) - np.pi


LKJ_CHOL = dist.LKJCholesky(3, 1.5)
MVT = dist.MultivariateStudentT(5.0, f32([1.0, -1.0]), L2)
GRW = dist.GaussianRandomWalk(0.7, num_steps=5)
# Several settings of one family share one draw (one compile) as a batch.
VON_MISES = dist.VonMises(f32([1.0, -3.0, 0.0]), f32([0.5, 20.0, 0.005]))
TRUNCATED = dist.TruncatedNormal(
    f32([0.5, 0.0]), f32([2.0, 1.0]), f32([-1.0, 3.0]), f32([4.0, 40.0])
)


def _column(j, fn=None):
    return lambda x: x[:, j] if fn is None else fn(x[:, j])


# Samplers drawn, each once: name -> distribution (one code path each).
SAMPLERS = {
    "Chi2": dist.Chi2(3.5),
    "InverseGamma": dist.InverseGamma(3.0, 2.0),
    "Gumbel": dist.Gumbel(0.5, 2.0),
    "Logistic": dist.Logistic(0.5, 2.0),
    "Weibull": dist.Weibull(2.0, 1.5),
    "Pareto": dist.Pareto(1.5, 3.0),
    "Kumaraswamy": dist.Kumaraswamy(2.0, 3.0),
    "AsymmetricLaplace": dist.AsymmetricLaplace(0.5, 2.0, 0.6),
    "SoftLaplace": dist.SoftLaplace(0.5, 2.0),
    "VonMises": VON_MISES,
    "TruncatedNormal": TRUNCATED,
    "RelaxedBernoulli": dist.RelaxedBernoulli(0.7, logits=0.4),
    "RelaxedOneHotCategorical": dist.RelaxedOneHotCategorical(
        0.5, logits=f32([0.3, -0.2, 1.0])
    ),
    "MixtureSameFamily": NORMAL_MIX,
    "MixtureGeneral": GENERAL_MIX,
    "MultivariateStudentT": MVT,
    "GaussianRandomWalk": GRW,
    "LKJCholesky": LKJ_CHOL,
}

# check -> (sampler, function of the draws, reference cdf)
CONTINUOUS = {
    "Chi2": ("Chi2", None, st.chi2(3.5).cdf),
    "InverseGamma": ("InverseGamma", None, st.invgamma(3.0, scale=2.0).cdf),
    "Gumbel": ("Gumbel", None, st.gumbel_r(0.5, 2.0).cdf),
    "Logistic": ("Logistic", None, st.logistic(0.5, 2.0).cdf),
    "Weibull": ("Weibull", None, st.weibull_min(1.5, scale=2.0).cdf),
    "Pareto": ("Pareto", None, st.pareto(3.0, scale=1.5).cdf),
    "Kumaraswamy": ("Kumaraswamy", None, lambda x: 1 - (1 - x**2.0) ** 3.0),
    "AsymmetricLaplace": (
        "AsymmetricLaplace",
        None,
        st.laplace_asymmetric(0.6, 0.5, 2.0).cdf,
    ),
    "SoftLaplace": ("SoftLaplace", None, st.hypsecant(0.5, 2.0).cdf),
    "VonMises": (
        "VonMises",
        _column(0, lambda x: _wrapped(x, 1.0)),
        st.vonmises(0.5).cdf,
    ),
    "VonMises(concentrated)": (
        "VonMises",
        _column(1, lambda x: _wrapped(x, -3.0)),
        st.vonmises(20.0).cdf,
    ),
    "VonMises(flat)": ("VonMises", _column(2), st.vonmises(0.005).cdf),
    "TruncatedNormal": (
        "TruncatedNormal",
        _column(0),
        st.truncnorm(-0.75, 1.75, 0.5, 2.0).cdf,
    ),
    "TruncatedNormal(tail)": (
        "TruncatedNormal",
        _column(1),
        st.truncnorm(3.0, 40.0).cdf,
    ),
    "RelaxedBernoulli": (
        "RelaxedBernoulli",
        None,
        lambda y: ss.expit(0.7 * ss.logit(y) - 0.4),
    ),
    "RelaxedOneHotCategorical": (
        "RelaxedOneHotCategorical",
        # 0.5 (log y0 - log y1) - (0.3 + 0.2) is a difference of Gumbels: logistic
        lambda y: 0.5 * (np.log(y[:, 0]) - np.log(y[:, 1])) - 0.5,
        st.logistic().cdf,
    ),
    "MixtureSameFamily": (
        "MixtureSameFamily",
        None,
        lambda x: 0.3 * st.norm(-1, 0.5).cdf(x) + 0.7 * st.norm(2, 1).cdf(x),
    ),
    "MixtureGeneral": (
        "MixtureGeneral",
        None,
        lambda x: 0.4 * st.norm().cdf(x) + 0.6 * st.gumbel_r(1, 0.5).cdf(x),
    ),
    "MultivariateStudentT(x0)": (
        "MultivariateStudentT",
        _column(0),
        st.t(5.0, 1.0, 1.0).cdf,
    ),
    "MultivariateStudentT(maha)": (
        "MultivariateStudentT",
        lambda x: (
            np.sum(
                np.linalg.solve(np.float64(L2), (np.float64(x) - [1.0, -1.0]).T) ** 2, 0
            )
            / 2
        ),
        st.f(2, 5.0).cdf,
    ),
    "GaussianRandomWalk(last)": (
        "GaussianRandomWalk",
        _column(-1),
        st.norm(0, 0.7 * math.sqrt(5)).cdf,
    ),
    "GaussianRandomWalk(step)": (
        "GaussianRandomWalk",
        lambda x: x[:, 3] - x[:, 2],
        st.norm(0, 0.7).cdf,
    ),
}
# LKJ: every off-diagonal correlation r of C = L L^T (LKJ's draws) has
# (r + 1) / 2 ~ Beta(b, b) with b = eta - 1 + D / 2.
for i, j in [(1, 0), (2, 0), (2, 1)]:
    CONTINUOUS[f"LKJ(r{i}{j})"] = (
        "LKJCholesky",
        lambda m, i=i, j=j: (np.einsum("nk,nk->n", m[:, i], m[:, j]) + 1) / 2,
        st.beta(2.0, 2.0).cdf,
    )


def _nb(n, p_counted):
    return st.nbinom(n, 1 - p_counted)


def _zi(gate, ref):
    return lambda k: np.where(k == 0, gate, 0.0) + (1 - gate) * ref.pmf(k)


# name -> (distribution, values to check, reference pmf)
KS = np.arange(0, 25)
DISCRETE = {
    "Geometric": (dist.Geometric(0.3), KS, st.geom(0.3, loc=-1).pmf),
    "DiscreteUniform": (
        dist.DiscreteUniform(-2, 3),
        np.arange(-3, 5),
        st.randint(-2, 4).pmf,
    ),
    "BetaBinomial": (
        dist.BetaBinomial(2.0, 3.0, 6),
        np.arange(8),
        st.betabinom(6, 2, 3).pmf,
    ),
    # The four negative binomials share one sampler (a Poisson of a Gamma draw,
    # given n and the rate); see test_negative_binomials_are_gamma_poissons.
    "GammaPoisson": (dist.GammaPoisson(2.0, 0.5), KS, _nb(2.0, 1 / 1.5).pmf),
    "ZeroInflatedPoisson": (
        dist.ZeroInflatedPoisson(0.3, 2.0),
        KS,
        _zi(0.3, st.poisson(2.0)),
    ),
    "ZeroInflatedNegativeBinomial2": (
        dist.ZeroInflatedNegativeBinomial2(3.0, 2.0, gate=0.2),
        KS,
        _zi(0.2, _nb(2.0, 0.6)),
    ),
    "ZeroInflatedDistribution": (
        dist.ZeroInflatedDistribution(dist.Binomial(5, 0.4), gate_logits=-0.5),
        np.arange(7),
        _zi(ss.expit(-0.5), st.binom(5, 0.4)),
    ),
}
OUTCOMES = np.array([c for c in itertools.product(range(5), repeat=3) if sum(c) == 4])
VECTOR_DISCRETE = {
    "Multinomial": (
        dist.Multinomial(4, f32([0.2, 0.3, 0.5])),
        st.multinomial(4, [0.2, 0.3, 0.5]).pmf,
    ),
    "DirichletMultinomial": (
        dist.DirichletMultinomial(f32([1.0, 2.0, 0.5]), 4),
        st.dirichlet_multinomial([1.0, 2.0, 0.5], 4).pmf,
    ),
}
ALL = {
    **SAMPLERS,
    **{k: v[0] for k, v in DISCRETE.items()},
    **{k: v[0] for k, v in VECTOR_DISCRETE.items()},
}


@pytest.fixture(scope="module")
def draws():
    @jax.jit
    def run(families, key):
        keys = jax.random.split(key, len(families))
        out = {}
        for (name, d), k in zip(families.items(), keys):
            x = d.sample(k, (N,))
            out[name] = (x, d.support.check(x), d.log_prob(x))
        return out

    return jax.tree.map(np.asarray, run(ALL, jax.random.key(0)))


def _common_checks(name, draws):
    d = ALL[name]
    x, ok, lp = draws[name]
    assert x.shape == d.shape((N,))
    assert ok.all(), f"draws outside the support: {x[~ok]}"
    assert np.all(np.isfinite(lp))
    return x


@pytest.mark.parametrize("name", list(CONTINUOUS))
def test_continuous_samplers_pass_a_ks_test(name, draws):
    sampler, fn, cdf = CONTINUOUS[name]
    x = _common_checks(sampler, draws)
    stat = np.float64(x if fn is None else fn(x))
    p = st.kstest(stat, cdf).pvalue
    assert p > ALPHA, f"KS p-value {p}"


def _assert_frequencies(x, values, pmf):
    freq = np.array(
        [np.mean(np.all(x == v, axis=-1) if x.ndim > 1 else x == v) for v in values]
    )
    p = pmf(values)
    se = np.sqrt(p * (1 - p) / N)
    err = np.abs(freq - p)
    assert np.all(err <= Z * se + 1e-12), f"frequencies {freq} vs pmf {p}"


@pytest.mark.parametrize("name", list(DISCRETE))
def test_discrete_frequencies_match_the_pmf(name, draws):
    x = _common_checks(name, draws)
    _, values, pmf = DISCRETE[name]
    _assert_frequencies(x, values, pmf)


@pytest.mark.parametrize("name", list(VECTOR_DISCRETE))
def test_vector_count_frequencies_match_the_pmf(name, draws):
    x = _common_checks(name, draws)
    assert np.all(x.sum(-1) == 4)
    _assert_frequencies(x, OUTCOMES, VECTOR_DISCRETE[name][1])


def test_negative_binomials_are_gamma_poissons():
    """Each draws Poisson(Gamma(n) / rate): their n and rate against the
    GammaPoisson each equals (and the pmfs agree)."""
    k = np.arange(6)
    ref = dist.GammaPoisson(3.0, 1.5)
    for d in [
        dist.NegativeBinomialProbs(3.0, 0.4),
        dist.NegativeBinomialLogits(3.0, float(ss.logit(0.4))),
        dist.NegativeBinomial2(2.0, 3.0),  # mean n / rate = 2
    ]:
        np.testing.assert_allclose(d._n(), 3.0)
        np.testing.assert_allclose(d._rate(), 1.5, rtol=1e-6)
        np.testing.assert_allclose(d.log_prob(k), ref.log_prob(k), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name",
    [n for n in ALL if not n.startswith(("Relaxed", "LKJ", "VonMises"))],
)
def test_monte_carlo_means(name, draws):
    d = ALL[name]
    assert_mc_close(draws[name][0], d.mean, z=Z)


# ---------------------------------------------------------------- gradients

EULER = 0.5772156649015329
L = f32([[1.2, 0.0], [0.3, 0.9]])


def _tn_mean(loc=0.5, scale=2.0, low=-1.0, high=4.0):
    return st.truncnorm((low - loc) / scale, (high - loc) / scale, loc, scale).mean()


def _fd(f, h=1e-5):
    return (f(h) - f(-h)) / (2 * h)


# name -> (theta, draws as a function of theta, analytic d E[draws] / d theta)
GRADIENTS = {
    "Chi2(df)": (3.0, lambda t: dist.Chi2(t), lambda x: x, 1.0),
    "InverseGamma(concentration, rate)": (
        [5.0, 2.0],
        lambda t: dist.InverseGamma(t[0], t[1]),
        lambda x: x,
        [-2.0 / 16, 0.25],
    ),
    "Gumbel(scale)": (2.0, lambda t: dist.Gumbel(0.5, t), lambda x: x, EULER),
    "Logistic(scale)": (
        1.5,
        lambda t: dist.Logistic(0.5, t),
        lambda x: x**2,
        2 * 1.5 * math.pi**2 / 3,
    ),
    "Weibull(concentration)": (
        1.5,
        lambda t: dist.Weibull(2.0, t),
        lambda x: x,
        2.0 * ss.gamma(1 + 1 / 1.5) * ss.digamma(1 + 1 / 1.5) * (-1 / 1.5**2),
    ),
    "Pareto(alpha)": (4.5, lambda t: dist.Pareto(1.5, t), lambda x: x, -1.5 / 3.5**2),
    "Kumaraswamy(concentration1)": (
        2.0,
        lambda t: dist.Kumaraswamy(t, 3.0),
        lambda x: x,
        3.0 * ss.beta(1.5, 3.0) * (ss.digamma(1.5) - ss.digamma(4.5)) * (-1 / 4.0),
    ),
    "AsymmetricLaplace(asymmetry)": (
        0.6,
        lambda t: dist.AsymmetricLaplace(0.0, 1.0, t),
        lambda x: x,
        -(1 / 0.36 + 1),
    ),
    "SoftLaplace(scale)": (
        1.2,
        lambda t: dist.SoftLaplace(0.0, t),
        lambda x: x**2,
        math.pi**2 * 1.2 / 2,
    ),
    "TruncatedNormal(loc, scale, low, high)": (
        [0.5, 2.0, -1.0, 4.0],
        lambda t: dist.TruncatedNormal(t[0], t[1], t[2], t[3]),
        lambda x: x,
        [
            _fd(lambda h: _tn_mean(loc=0.5 + h)),
            _fd(lambda h: _tn_mean(scale=2.0 + h)),
            _fd(lambda h: _tn_mean(low=-1.0 + h)),
            _fd(lambda h: _tn_mean(high=4.0 + h)),
        ],
    ),
    "MultivariateStudentT(df)": (
        6.0,
        lambda t: dist.MultivariateStudentT(t, 0.0, L),
        lambda x: x[..., 0] ** 2,
        -2 * 1.44 / 16,
    ),
    "GaussianRandomWalk(scale)": (
        0.8,
        lambda t: dist.GaussianRandomWalk(t, num_steps=4),
        lambda x: x[..., -1] ** 2,
        8 * 0.8,
    ),
    # E[L_11^2] = E[1 - y], y ~ Beta(1/2, eta + 1/2): (eta + 1/2) / (eta + 1)
    "LKJCholesky(concentration)": (
        1.5,
        lambda t: dist.LKJCholesky(3, t),
        lambda m: m[..., 1, 1] ** 2,
        0.5 / 2.5**2,
    ),
    # E[logit y] = logits / temperature
    "RelaxedBernoulli(temperature)": (
        0.8,
        lambda t: dist.RelaxedBernoulli(t, logits=0.6),
        lambda y: jnp.log(y) - jnp.log1p(-y),
        -0.6 / 0.64,
    ),
    # E[log y0 - log y1] = (l0 - l1) / temperature
    "RelaxedOneHotCategorical(temperature)": (
        0.8,
        lambda t: dist.RelaxedOneHotCategorical(t, logits=f32([0.5, -0.1, 0.0])),
        lambda y: jnp.log(y[..., 0]) - jnp.log(y[..., 1]),
        -0.6 / 0.64,
    ),
}


@pytest.fixture(scope="module")
def pathwise():
    names = list(GRADIENTS)

    @jax.jit
    def run(thetas, key):
        keys = jax.random.split(key, len(names))
        out = {}
        for name, k in zip(names, keys):
            _, make, fn, _ = GRADIENTS[name]

            def draw(t, make=make, fn=fn, k=k):
                return fn(make(t).sample(k, (N,)))

            out[name] = jax.jacfwd(draw)(thetas[name])
        return out

    thetas = {n: jnp.asarray(GRADIENTS[n][0], jnp.float32) for n in names}
    return jax.tree.map(np.asarray, run(thetas, jax.random.key(1)))


@pytest.mark.parametrize("name", list(GRADIENTS))
def test_pathwise_gradients_match_analytic_derivatives(name, pathwise):
    assert_mc_close(pathwise[name], GRADIENTS[name][3], z=Z)


def test_reparameterization_flags():
    discrete = {n for n in {**DISCRETE, **VECTOR_DISCRETE}}
    for name, d in ALL.items():
        if name in discrete:
            assert not d.has_rsample and d.is_discrete, name
    for d in [NORMAL_MIX, GENERAL_MIX, VON_MISES]:
        assert not d.has_rsample


# -------------------------------------------------------- relaxed families


@pytest.fixture(scope="module")
def relaxed_draws():
    temps = f32([1.0, 0.1, 0.01])
    logits = f32([0.5, -0.3, 1.0])

    @jax.jit
    def run(key):
        k1, k2 = jax.random.split(key)
        b = dist.RelaxedBernoulli(temps, logits=0.4).sample(k1, (N,))
        c = dist.RelaxedOneHotCategorical(temps, logits=logits).sample(k2, (N,))
        return b, c

    b, c = run(jax.random.key(2))
    return temps, np.asarray(b, np.float64), np.asarray(c, np.float64), logits


def test_relaxed_bernoulli_approaches_bernoulli_as_temperature_goes_to_0(relaxed_draws):
    temps, b, _, _ = relaxed_draws
    p = ss.expit(0.4)
    # At every temperature, P(y > 1/2) = P(L > -logits) = sigmoid(logits).
    for j in range(len(temps)):
        _assert_frequencies(
            (b[:, j] > 0.5).astype(int), np.array([1]), lambda v: p + 0 * v
        )
    # E[min(y, 1 - y)] = E[sigmoid(-|logits + L| / t)] <= t log(2) / 2, the logistic
    # density being at most 1/4: the draws go to {0, 1} at rate t.
    dist_to_hard = np.minimum(b, 1 - b)
    se = dist_to_hard.std(0, ddof=1) / np.sqrt(N)
    assert np.all(dist_to_hard.mean(0) <= temps * math.log(2) / 2 + Z * se)
    assert np.all(np.diff(dist_to_hard.mean(0)) < 0)


def test_relaxed_one_hot_approaches_one_hot_as_temperature_goes_to_0(relaxed_draws):
    temps, _, c, logits = relaxed_draws
    probs = np.exp(logits - ss.logsumexp(logits))
    # argmax of softmax((logits + G) / t) is Categorical(probs) at every t.
    for j in range(len(temps)):
        winners = np.argmax(c[:, j], -1)
        _assert_frequencies(winners, np.arange(3), lambda v: probs[v])
    # 1 - max y <= sum over the other k of y_k / (y_k + y_max) = sigmoid(-|g_k -
    # g_max| / t) with g = logits + G; summed over all K (K - 1) / 2 pairs, each
    # difference of Gumbels being logistic, E[1 - max y] <= 3 t log(2) / 2 (K = 3).
    gap = 1 - c.max(-1)
    se = gap.std(0, ddof=1) / np.sqrt(N)
    assert np.all(gap.mean(0) <= 3 * temps * math.log(2) / 2 + Z * se)
    assert np.all(np.diff(gap.mean(0)) < 0)
