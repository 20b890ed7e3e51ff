"""log_prob, mean and variance of the families of ``continuous2``, ``truncated``,
``counts``, ``negbinomial``, ``multivariate2``, ``mixtures`` and ``relaxed``
against ``scipy.stats``, or against a closed form written here where scipy has
none (float32 values, float64 references).

Univariate parameters have batch shape (2, 3), built by broadcasting a (2, 1) and
a (3,) array; values have shape (4, 2, 3). Tolerance: ``RTOL`` relative to
``max(1, |reference|)``, about 80 float32 ulps: room for the few rounded
operations (logs, lgammas of moderate arguments) between the parameters and the
result.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si
import scipy.special as ss
import scipy.stats as st

import jsvi.distributions as dist

RTOL = 1e-5
rng = np.random.default_rng(0)


def f32(x):
    return np.asarray(x, dtype=np.float32)


def assert_close(actual, expected, rtol=RTOL):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == np.broadcast_shapes(actual.shape, expected.shape)
    expected = np.broadcast_to(expected, actual.shape)
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    tol = rtol * np.maximum(1.0, np.abs(expected))
    with np.errstate(invalid="ignore"):
        err = np.where(same, 0.0, np.abs(actual - expected))
    assert np.all(err <= tol), f"|error| {err} exceeds {tol}: {actual} vs {expected}"


LOC = f32([[-1.0], [0.5]])
SCALE = f32([0.5, 1.0, 2.0])
A = f32([[0.7], [2.5]])  # shape parameters, some below 1
B = f32([0.8, 1.5, 3.0])
A_MOM = f32([[2.5], [4.5]])  # concentrations above 2 (finite variances)
KAPPA = f32([0.05, 1.0, 8.0])
X = f32(rng.normal(size=(4, 2, 3)) * 2)
POS = f32(rng.gamma(2.0, size=(4, 2, 3)))
UNIT = f32(rng.uniform(0.05, 0.95, size=(4, 2, 3)))
ANGLE = f32(rng.uniform(-np.pi, np.pi, size=(4, 2, 3)))
P = f32([[0.2], [0.7]])
COUNTS = rng.integers(0, 8, size=(4, 2, 3))
TOTAL = np.array([1, 5, 10])
K_BINOM = rng.integers(0, 11, size=(4, 2, 3)) % (TOTAL + 1)
LOW = f32([[-2.0], [0.0]])
HIGH = f32([1.0, 2.5, 4.0])
TN_LOC = f32([[0.0], [-1.0]])  # windows around the mean, and 0.5 to 2 sds above it
TN_VALUES = f32(LOW + 1e-3 + (HIGH - LOW - 2e-3) * UNIT)


def _kumaraswamy_logpdf(x, a, b):
    return np.log(a * b) + (a - 1) * np.log(x) + (b - 1) * np.log1p(-(x**a))


def _kumaraswamy_moment(a, b, n):
    a, b = np.broadcast_arrays(np.float64(a), np.float64(b))
    out = np.empty(a.shape)
    for i in np.ndindex(a.shape):
        pdf = lambda x, i=i: x**n * np.exp(_kumaraswamy_logpdf(x, a[i], b[i]))  # noqa: E731
        out[i] = si.quad(pdf, 0, 1)[0]
    return out


def _relaxed_bernoulli_logpdf(y, t, logits):
    # Maddison et al. (2017), eq. in Appendix: density of the binary Concrete.
    y, t, alpha = np.float64(y), np.float64(t), np.exp(np.float64(logits))
    num = np.log(t * alpha) + (-t - 1) * (np.log(y) + np.log1p(-y))
    return num - 2 * np.log(alpha * y ** (-t) + (1 - y) ** (-t))


def _zero_inflated_logpmf(k, gate, base_logpmf):
    base = base_logpmf(k)
    return np.where(
        k == 0, np.log(gate + (1 - gate) * np.exp(base)), np.log1p(-gate) + base
    )


def _nb_scipy(n, p_success_counted):
    """scipy's nbinom counts failures before n successes of probability p."""
    return st.nbinom(np.float64(n), 1 - np.float64(p_success_counted))


GATE = f32([[0.1], [0.6]])
RATE = f32([0.5, 2.0, 6.0])
NB_P = f32(P * B / 3)

# name -> (distribution, value, logpdf reference, mean, variance); None skips.
CASES = {
    "Chi2": (dist.Chi2(A * B * 2), POS, st.chi2(A * B * 2), None, None),
    "InverseGamma": (dist.InverseGamma(A, B), POS, st.invgamma(A, scale=B), None, None),
    "InverseGamma(moments)": (
        dist.InverseGamma(A_MOM, B),
        POS,
        st.invgamma(A_MOM, scale=B),
        None,
        None,
    ),
    "Gumbel": (dist.Gumbel(LOC, SCALE), X, st.gumbel_r(LOC, SCALE), None, None),
    "Logistic": (dist.Logistic(LOC, SCALE), X, st.logistic(LOC, SCALE), None, None),
    "Weibull": (
        dist.Weibull(SCALE, A),
        POS,
        st.weibull_min(A, scale=SCALE),
        None,
        None,
    ),
    "Pareto": (
        dist.Pareto(SCALE, A_MOM),
        SCALE + POS,
        st.pareto(A_MOM, scale=SCALE),
        None,
        None,
    ),
    "Pareto(heavy)": (
        dist.Pareto(SCALE, A),
        SCALE + POS,
        st.pareto(A, scale=SCALE),
        None,
        None,
    ),
    "AsymmetricLaplace": (
        dist.AsymmetricLaplace(LOC, SCALE, B),
        X,
        st.laplace_asymmetric(B, LOC, SCALE),
        None,
        None,
    ),
    "SoftLaplace": (
        dist.SoftLaplace(LOC, SCALE),
        X,
        st.hypsecant(LOC, SCALE),
        None,
        None,
    ),
    "VonMises": (
        dist.VonMises(LOC, KAPPA),
        ANGLE,
        st.vonmises(np.float64(KAPPA), loc=LOC),
        np.broadcast_to(LOC, (2, 3)),
        1 - ss.i1(np.float64(KAPPA)) / ss.i0(np.float64(KAPPA)) * np.ones((2, 1)),
    ),
    "TruncatedNormal": (
        dist.TruncatedNormal(TN_LOC, SCALE, LOW, HIGH),
        TN_VALUES,
        st.truncnorm((LOW - TN_LOC) / SCALE, (HIGH - TN_LOC) / SCALE, TN_LOC, SCALE),
        None,
        None,
    ),
    "TruncatedNormal(low)": (
        dist.TruncatedNormal(TN_LOC, SCALE, low=LOW),
        LOW + POS,
        st.truncnorm((LOW - TN_LOC) / SCALE, np.inf, TN_LOC, SCALE),
        None,
        None,
    ),
    "TruncatedNormal(high)": (
        dist.TruncatedNormal(TN_LOC, SCALE, high=HIGH),
        HIGH - POS,
        st.truncnorm(-np.inf, (HIGH - TN_LOC) / SCALE, TN_LOC, SCALE),
        None,
        None,
    ),
    "Geometric(probs)": (
        dist.Geometric(P * B / 3),
        COUNTS,
        st.geom(P * B / 3, loc=-1),
        None,
        None,
    ),
    "Geometric(logits)": (
        dist.Geometric(logits=LOC * B),
        COUNTS,
        st.geom(ss.expit(np.float64(LOC * B)), loc=-1),
        None,
        None,
    ),
    "DiscreteUniform": (
        dist.DiscreteUniform(np.array([[0], [-2]]), np.array([7, 8, 10])),
        COUNTS,
        st.randint(np.array([[0], [-2]]), np.array([8, 9, 11])),
        None,
        None,
    ),
    "BetaBinomial": (
        dist.BetaBinomial(A, B, TOTAL),
        K_BINOM,
        st.betabinom(TOTAL, A, B),
        None,
        None,
    ),
    "GammaPoisson": (
        dist.GammaPoisson(A, RATE),
        COUNTS,
        _nb_scipy(A, 1 / (1 + np.float64(RATE))),
        None,
        None,
    ),
    "NegativeBinomialProbs": (
        dist.NegativeBinomialProbs(A * 3, NB_P),
        COUNTS,
        _nb_scipy(A * 3, NB_P),
        None,
        None,
    ),
    "NegativeBinomialLogits": (
        dist.NegativeBinomialLogits(A * 3, LOC * B),
        COUNTS,
        _nb_scipy(A * 3, ss.expit(np.float64(LOC * B))),
        None,
        None,
    ),
    "NegativeBinomial2": (
        dist.NegativeBinomial2(RATE, A),
        COUNTS,
        _nb_scipy(A, np.float64(RATE) / (np.float64(RATE) + A)),
        None,
        None,
    ),
}


@jax.jit
def _lp(d, value):
    return d.log_prob(value)


@jax.jit
def _evaluate(d, value):
    return d.log_prob(value), d.mean, d.variance


@pytest.fixture(scope="module")
def results():
    """Every case evaluated in one compiled program."""
    cases = {n: (c[0], c[1]) for n, c in CASES.items()}
    return jax.jit(lambda cs: {n: _evaluate(d, v) for n, (d, v) in cs.items()})(cases)


@pytest.mark.parametrize("name", list(CASES))
def test_log_prob_mean_variance_match_scipy(name, results):
    d, value, ref, mean, var = CASES[name]
    assert d.batch_shape == (2, 3) and d.event_shape == ()
    lp, d_mean, d_var = results[name]
    logpdf = ref.logpmf if hasattr(ref, "logpmf") else ref.logpdf
    assert lp.shape == (4, 2, 3)
    assert_close(lp, logpdf(np.float64(value)))
    assert_close(d_mean, ref.mean() if mean is None else mean)
    assert_close(d_var, ref.var() if var is None else var)


def test_kumaraswamy_against_its_density_and_integrated_moments():
    a, b = A * 2, B
    d = dist.Kumaraswamy(a, b)
    lp, mean, var = _evaluate(d, UNIT)
    assert_close(lp, _kumaraswamy_logpdf(np.float64(UNIT), a, b))
    m1, m2 = _kumaraswamy_moment(a, b, 1), _kumaraswamy_moment(a, b, 2)
    assert_close(mean, m1)
    assert_close(var, m2 - m1**2)


def test_zero_inflated_families_against_the_mixture_pmf():
    gate, rate = np.float64(GATE), np.float64(RATE)
    zip_ref = _zero_inflated_logpmf(COUNTS, gate, st.poisson(rate).logpmf)
    for d in [
        dist.ZeroInflatedPoisson(GATE, RATE),
        dist.ZeroInflatedDistribution(dist.Poisson(RATE), gate=GATE),
        dist.ZeroInflatedDistribution(
            dist.Poisson(RATE), gate_logits=f32(ss.logit(gate))
        ),
    ]:
        lp, mean, var = _evaluate(d, COUNTS)
        assert_close(lp, zip_ref)
        assert_close(mean, (1 - gate) * rate)
        assert_close(var, (1 - gate) * rate * (1 + gate * rate))
    mu, conc = rate, np.float64(A)
    nb = _nb_scipy(conc, mu / (mu + conc))
    d = dist.ZeroInflatedNegativeBinomial2(RATE, A, gate=GATE)
    lp, mean, var = _evaluate(d, COUNTS)
    assert_close(lp, _zero_inflated_logpmf(COUNTS, gate, nb.logpmf))
    assert_close(mean, (1 - gate) * nb.mean())
    assert_close(var, (1 - gate) * (nb.var() + gate * nb.mean() ** 2))


def test_multinomial_and_dirichlet_multinomial():
    probs = f32(rng.dirichlet(np.ones(4), size=2))
    alpha = f32(rng.gamma(2.0, size=(2, 4)) + 0.3)
    n = np.array([3, 7])
    x = np.stack([rng.multinomial(k, [0.25] * 4, size=5) for k in n], 1)  # (5, 2, 4)
    cases = [
        (dist.Multinomial(n, probs), [st.multinomial(k, p) for k, p in zip(n, probs)]),
        (
            dist.Multinomial(n, logits=f32(np.log(probs) + 1.0)),
            [st.multinomial(k, p) for k, p in zip(n, probs)],
        ),
        (
            dist.DirichletMultinomial(alpha, n),
            [st.dirichlet_multinomial(a, k) for k, a in zip(n, alpha)],
        ),
    ]
    for d, refs in cases:
        assert d.batch_shape == (2,) and d.event_shape == (4,)
        lp, mean, var = _evaluate(d, x)
        expected = np.stack([r.logpmf(x[:, j]) for j, r in enumerate(refs)], 1)
        assert_close(lp, expected)
        assert_close(mean, np.stack([r.mean() for r in refs]))
        assert_close(var, np.stack([np.diagonal(r.cov()) for r in refs]))


def _lkj_log_normalizer(d, eta):
    """log c_D(eta) of Lewandowski, Kurowicka and Joe (2009), eq. 16: the integral of
    det(C)^(eta - 1) over D x D correlation matrices."""
    total = 0.0
    for k in range(1, d):
        b = eta + (d - k - 1) / 2
        total += (2 * eta - 2 + d - k) * (d - k) * np.log(2.0)
        total += (d - k) * ss.betaln(b, b)
    return total


def _random_correlations(d, n):
    m = rng.normal(size=(n, d, d + 1))
    cov = m @ np.swapaxes(m, -1, -2)
    s = 1 / np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    return cov * s[:, :, None] * s[:, None, :]


@jax.jit
def _lkj_log_probs(chol, corr, eta):
    d = chol.shape[-1]
    return dist.LKJCholesky(d, eta).log_prob(chol), dist.LKJ(d, eta).log_prob(corr)


@pytest.mark.parametrize("d, eta", [(2, 0.5), (3, 1.0), (3, 2.5), (5, 0.8)])
def test_lkj_densities_against_the_published_normalizer(d, eta):
    corr = _random_correlations(d, 6)
    chol = np.linalg.cholesky(corr)
    log_det = np.linalg.slogdet(corr)[1]
    lkj_ref = (eta - 1) * log_det - _lkj_log_normalizer(d, eta)
    # Density of L over its strictly lower entries: the Jacobian of L -> L L^T
    # there is prod_i L_ii^(D - 1 - i).
    diag = np.diagonal(chol, axis1=-2, axis2=-1)
    log_jac = np.sum(np.arange(d - 1, -1, -1) * np.log(diag), -1)
    lp_chol, lp_corr = _lkj_log_probs(f32(chol), f32(corr), np.float32(eta))
    assert_close(lp_chol, lkj_ref + log_jac, rtol=1e-4)
    assert_close(lp_corr, lkj_ref, rtol=1e-4)
    if d == 2:  # the correlation r: (r + 1) / 2 ~ Beta(eta, eta)
        r = corr[:, 1, 0]
        assert_close(
            lp_corr, st.beta(eta, eta).logpdf((r + 1) / 2) - np.log(2), rtol=1e-4
        )


def test_lkj_moments():
    d = dist.LKJ(4, f32([0.5, 3.0]))
    beta = np.float64([0.5, 3.0]) - 1 + 2
    var = (1 / (2 * beta + 1))[:, None, None] * (1 - np.eye(4))
    assert_close(d.mean, np.broadcast_to(np.eye(4), (2, 4, 4)))
    assert_close(d.variance, var)


def test_multivariate_student_t():
    df = f32([[2.5], [7.0]])
    loc = f32(rng.normal(size=(3, 2)))
    m = rng.normal(size=(2, 2))
    cov = m @ m.T + np.eye(2)
    d = dist.MultivariateStudentT(df, loc, f32(np.linalg.cholesky(cov)))
    assert d.batch_shape == (2, 3) and d.event_shape == (2,)
    x = f32(rng.normal(size=(4, 2, 3, 2)) * 2)
    lp, mean, var = _evaluate(d, x)
    expected = np.empty((4, 2, 3))
    for idx in np.ndindex(4, 2, 3):
        ref = st.multivariate_t(loc[idx[2]], cov, df=np.float64(df[idx[1], 0]))
        expected[idx] = ref.logpdf(np.float64(x[idx]))
    assert_close(lp, expected)
    assert_close(mean, np.broadcast_to(loc, (2, 3, 2)))
    df64 = np.float64(df)[..., None]
    assert_close(var, np.broadcast_to(np.diag(cov) * df64 / (df64 - 2), (2, 3, 2)))
    low_df = dist.MultivariateStudentT(
        f32([0.8, 1.5]), 0.0, np.eye(2, dtype=np.float32)
    )
    assert np.all(np.isinf(low_df.mean[0])) and np.all(np.isnan(low_df.variance[0]))
    assert np.all(np.isinf(low_df.variance[1]))


def test_gaussian_random_walk():
    scale = f32([0.5, 2.0])
    d = dist.GaussianRandomWalk(scale, num_steps=4)
    assert d.batch_shape == (2,) and d.event_shape == (4,)
    x = f32(rng.normal(size=(3, 2, 4)))
    steps = np.diff(np.float64(x), axis=-1, prepend=0.0)
    expected = st.norm(0, scale[:, None]).logpdf(steps).sum(-1)
    lp, mean, var = _evaluate(d, x)
    assert_close(lp, expected)
    assert_close(mean, np.zeros((2, 4)))
    assert_close(var, scale[:, None] ** 2 * np.arange(1, 5))


def test_mixtures_against_the_weighted_density():
    w = f32(rng.dirichlet(np.ones(3), size=2))  # batch (2,), K = 3
    locs, scales = f32(rng.normal(size=(2, 3))), f32([0.5, 1.0, 2.0])
    x = f32(rng.normal(size=(5, 2)))
    comp = st.norm(locs, scales)
    expected = np.log(np.sum(w * comp.pdf(np.float64(x)[..., None]), -1))
    mean = np.sum(w * locs, -1)
    var = np.sum(w * (scales**2 + np.float64(locs) ** 2), -1) - mean**2
    same = dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(locs, scales))
    general = dist.MixtureGeneral(
        dist.Categorical(logits=f32(np.log(w))),
        [dist.Normal(locs[:, k], scales[k]) for k in range(3)],
    )
    for d in (same, general):
        assert d.batch_shape == (2,) and d.event_shape == ()
        lp, d_mean, d_var = _evaluate(d, x)
        assert_close(lp, expected)
        assert_close(d_mean, mean)
        assert_close(d_var, var)
    # vector events: the component axis sits just before the event dims
    mvn = dist.MultivariateNormal(
        f32(rng.normal(size=(3, 2))), np.eye(2, dtype=np.float32)
    )
    d = dist.MixtureSameFamily(dist.Categorical(w[0]), mvn)
    xv = f32(rng.normal(size=(5, 2)))
    comp_lp = st.multivariate_normal(np.zeros(2)).logpdf(
        np.float64(xv)[:, None, :] - np.float64(mvn.loc)
    )
    assert_close(_lp(d, xv), ss.logsumexp(comp_lp + np.log(w[0]), -1))


def test_relaxed_densities():
    t = f32([[0.3], [1.5]])
    logits = f32([-1.0, 0.5, 2.0])
    lp = _lp(dist.RelaxedBernoulli(t, logits=logits), UNIT)
    assert_close(lp, _relaxed_bernoulli_logpdf(UNIT, t, logits))
    # K = 2: the Concrete density of (y, 1 - y) over its first coordinate is the
    # binary Concrete density of y, with logits l_1 - l_2.
    two = f32(np.stack([[0.3, -0.4], [1.0, 1.0], [-2.0, 0.5]]))  # (3, 2)
    y = np.stack([UNIT, 1 - UNIT], -1)  # (4, 2, 3, 2)
    lp2 = _lp(dist.RelaxedOneHotCategorical(t, logits=two), f32(y))
    ref = _relaxed_bernoulli_logpdf(UNIT, t, two[:, 0] - two[:, 1])
    assert_close(lp2, ref, rtol=4e-5)
    probs = f32(rng.dirichlet(np.ones(4), size=3))
    y4 = f32(rng.dirichlet(np.ones(4), size=(2, 3)))
    tt = f32([[0.5], [2.0]])
    lp4 = _lp(dist.RelaxedOneHotCategorical(tt, probs), y4)
    lam, a, yy = np.float64(tt), np.float64(probs), np.float64(y4)
    ref4 = (
        ss.gammaln(4)
        + 3 * np.log(lam)
        + np.sum(np.log(a) - (lam[..., None] + 1) * np.log(yy), -1)
        - 4 * np.log(np.sum(a * yy ** (-lam[..., None]), -1))
    )
    assert_close(lp4, ref4, rtol=4e-5)


@jax.jit
def _round_trips(ds, q):
    return [(d.icdf(q), d.cdf(d.icdf(q))) for d in ds]


def test_cdf_icdf_round_trip():
    q = f32([0.05, 0.5, 0.95])
    cases = [
        (dist.Gumbel(0.5, 2.0), st.gumbel_r(0.5, 2.0)),
        (dist.Logistic(0.5, 2.0), st.logistic(0.5, 2.0)),
        (dist.SoftLaplace(0.5, 2.0), st.hypsecant(0.5, 2.0)),
        (dist.Weibull(2.0, 1.5), st.weibull_min(1.5, scale=2.0)),
        (dist.Pareto(2.0, 3.0), st.pareto(3.0, scale=2.0)),
        (
            dist.TruncatedNormal(0.5, 2.0, -1.0, 4.0),
            st.truncnorm(-0.75, 1.75, 0.5, 2.0),
        ),
        (dist.TruncatedNormal(0.0, 1.0, low=3.0), st.truncnorm(3.0, np.inf)),
    ]
    out = _round_trips([d for d, _ in cases], q)
    for (x, q_back), (_, ref) in zip(out, cases):
        assert_close(x, ref.ppf(q), rtol=1e-4)
        assert_close(q_back, q, rtol=1e-4)


def test_truncated_normal_far_tail_stays_finite_and_normalized():
    # A window 8 to 9 standard deviations out: Phi differences underflow in a
    # naive computation; here the mirrored frame keeps log Z accurate.
    ref = st.truncnorm(8.0, 9.0)
    x = f32([8.01, 8.3, 8.9])

    @jax.jit
    def run(d):
        draws = d.sample(jax.random.key(0), (100,))
        return d.log_prob(x), d.mean, d.variance, draws, d.log_prob(draws)

    lp, mean, var, draws, lp_draws = run(dist.TruncatedNormal(0.0, 1.0, 8.0, 9.0))
    assert_close(lp, ref.logpdf(np.float64(x)), rtol=1e-4)
    assert_close(mean, ref.mean(), rtol=1e-5)
    # The variance (about 1 / 8^2) is what is left of terms of size 8^2: its
    # relative error grows like alpha^4 float32 ulps (a few times that bound).
    assert_close(var / ref.var(), 1.0, rtol=4 * 8.0**4 * 1.2e-7)
    assert bool(jnp.all((draws >= 8.0) & (draws <= 9.0)))
    assert math.isfinite(float(jnp.sum(lp_draws)))


@jax.jit
def _enumerated_mass(d):
    values = d.enumerate_support(expand=False)
    return values, jnp.sum(jnp.exp(d.log_prob(values)), axis=0)


def test_finite_supports_enumerate_and_their_pmfs_sum_to_one():
    for d, size in [
        (dist.DiscreteUniform(-1, 2), 4),
        (dist.BetaBinomial(f32([0.5, 2.0]), f32([1.5, 3.0]), 4), 5),
        (dist.ZeroInflatedDistribution(dist.Binomial(3, f32([0.2, 0.7])), gate=0.3), 4),
        (
            dist.MixtureSameFamily(
                dist.Categorical(f32([[0.3, 0.7], [0.5, 0.5]])),
                dist.Bernoulli(f32([[0.1, 0.8], [0.4, 0.9]])),
            ),
            2,
        ),
    ]:
        assert d.has_enumerate_support
        values, mass = _enumerated_mass(d)
        assert values.shape == (size,) + (1,) * len(d.batch_shape)
        assert d.enumerate_support().shape == (size,) + d.batch_shape
        assert_close(mass, np.ones(d.batch_shape))  # log_prob errors: RTOL each
    assert not dist.Geometric(0.5).has_enumerate_support
