"""Every autoguide against exact posteriors of conjugate models.

Models: Normal-Normal with known variance, Beta-Bernoulli, and a linear
regression with a Normal prior and known noise. Each guide's posterior mean is
compared with the mean of the best member of its family, and that member with
the exact posterior:

- Gaussian families (AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal,
  AutoLowRankMultivariateNormal) on a Gaussian posterior N(mu, S): KL(q || p) is
  0.5 [tr(S^-1 S_q) + (m - mu)' S^-1 (m - mu) - log|S_q| + const], minimized at
  m = mu for any covariance family, so the family's mean is exact; a
  mean-field family's variances are 1 / (S^-1)_ii, a full-rank one's covariance is
  S.
- AutoDelta maximizes the posterior density (MAP); for a Gaussian posterior the
  mode is the mean, for Beta(a, b) it is (a - 1) / (a + b - 2).
- Gaussian families on Beta-Bernoulli approximate the posterior of logit(p): the
  best member is found here by deterministic quadrature (Gauss-Hermite) and
  scipy's optimizer, and its mean of p is the family's answer.

The gap between the family's answer and the exact mean is the family's
approximation; the fitted guide must land within 0.1 posterior standard
deviations of the family's answer (and its log-scale within 0.1): the
convergence tolerance of SVI with a decaying step size.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

import jsvi
import jsvi.distributions as dist
from jsvi.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)

GUIDES = {
    "AutoDelta": AutoDelta,
    "AutoNormal": AutoNormal,
    "AutoDiagonalNormal": AutoDiagonalNormal,
    "AutoMultivariateNormal": AutoMultivariateNormal,
    "AutoLowRankMultivariateNormal": AutoLowRankMultivariateNormal,
}
TOL_SD = 0.1  # convergence tolerance, in posterior standard deviations
NUM_STEPS = 2000

# --- Normal-Normal: mu ~ N(1, 2), x_i ~ N(mu, 1.5) ---------------------------------

NN_X = np.asarray(jax.random.normal(jax.random.key(10), (10,))) * 1.5 + 2.0
NN_PRIOR, NN_SIGMA = (1.0, 2.0), 1.5


def nn_model(x):
    mu = jsvi.sample("mu", dist.Normal(*NN_PRIOR))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(mu, NN_SIGMA), obs=x)


def nn_exact():
    prec = 1 / NN_PRIOR[1] ** 2 + NN_X.size / NN_SIGMA**2
    mean = (NN_PRIOR[0] / NN_PRIOR[1] ** 2 + NN_X.sum() / NN_SIGMA**2) / prec
    return mean, 1 / np.sqrt(prec)


# --- Beta-Bernoulli: p ~ Beta(2, 2), 7 heads in 10 flips ------------------------------

BB_X = np.array([1.0] * 7 + [0.0] * 3)
BB_PRIOR = (2.0, 2.0)


def bb_model(x):
    p = jsvi.sample("p", dist.Beta(*BB_PRIOR))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Bernoulli(p), obs=x)


def bb_posterior():
    return BB_PRIOR[0] + BB_X.sum(), BB_PRIOR[1] + (1 - BB_X).sum()


@functools.lru_cache
def bb_logit_normal_optimum():
    """(m, s) of the Normal on logit(p) closest (KL(q || p)) to the posterior."""
    a, b = bb_posterior()
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()

    def neg_elbo(theta):
        m, log_s = theta
        u = m + np.exp(log_s) * nodes
        # log density of logit(p): a log sigmoid(u) + b log sigmoid(-u) (+ const)
        log_p = -a * np.logaddexp(0, -u) - b * np.logaddexp(0, u)
        return -(weights @ log_p + log_s)

    res = scipy.optimize.minimize(neg_elbo, [0.0, 0.0], method="BFGS", tol=1e-12)
    m, log_s = res.x
    mean_p = weights @ scipy.special.expit(m + np.exp(log_s) * nodes)
    return m, np.exp(log_s), mean_p


# --- linear regression: w ~ N(0, I_3), y ~ N(X w, 0.5^2) ------------------------------

LR_X = np.asarray(jax.random.normal(jax.random.key(11), (20, 3)))
LR_W = np.array([1.0, -2.0, 0.5])
LR_SIGMA = 0.5
LR_Y = LR_X @ LR_W + LR_SIGMA * np.asarray(jax.random.normal(jax.random.key(12), (20,)))


def lr_model(X, y):
    w = jsvi.sample("w", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
    with jsvi.plate("data", X.shape[0]):
        jsvi.sample("y", dist.Normal(X @ w, LR_SIGMA), obs=y)


def lr_exact():
    precision = LR_X.T @ LR_X / LR_SIGMA**2 + np.eye(3)
    cov = np.linalg.inv(precision)
    return cov @ LR_X.T @ LR_Y / LR_SIGMA**2, cov, precision


MODELS = {
    "normal_normal": (nn_model, (NN_X,)),
    "beta_bernoulli": (bb_model, (BB_X,)),
    "linear_regression": (lr_model, (LR_X, LR_Y)),
}


@functools.lru_cache
def fit(model_name: str, guide_name: str):
    """Train a guide once per (model, guide); shared by the tests below.

    Sticking the landing makes the gradient vanish at an exact optimum, and the
    step size decays 50-fold, so the last iterate is the optimum up to the noise
    left by a family that does not contain the posterior.
    """
    model, args = MODELS[model_name]
    guide = GUIDES[guide_name](model)
    schedule = optax.exponential_decay(0.05, NUM_STEPS, 0.02)
    loss = jsvi.Trace_ELBO(num_particles=4, stick_the_landing=True)
    svi = jsvi.SVI(model, guide, optax.adam(schedule), loss)
    args = tuple(jnp.asarray(a) for a in args)
    state, _ = jsvi.svi_run(
        svi, jax.random.key(0), NUM_STEPS, *args, progress_bar=False
    )
    return guide, jsvi.get_params(svi, state)


def posterior_mean(guide_name: str, guide, params, site: str) -> np.ndarray:
    """The guide's posterior mean of ``site`` in constrained space."""
    if guide_name == "AutoDelta":
        return np.asarray(guide.median(params)[site])
    draws = guide.sample_posterior(jax.random.key(5), params, sample_shape=(20_000,))
    return np.asarray(draws[site]).mean(0)


@pytest.mark.slow
@pytest.mark.parametrize("guide_name", list(GUIDES))
def test_normal_normal_posterior_mean(guide_name):
    mean, sd = nn_exact()
    guide, params = fit("normal_normal", guide_name)
    # Every family's answer is the exact mean (Gaussian posterior; mode = mean).
    got = float(guide.median(params)["mu"])
    assert abs(got - mean) <= TOL_SD * sd, (got, mean, sd)


@pytest.mark.slow
@pytest.mark.parametrize("guide_name", list(GUIDES))
def test_beta_bernoulli_posterior_mean(guide_name):
    a, b = bb_posterior()
    exact_mean = a / (a + b)
    exact_sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    guide, params = fit("beta_bernoulli", guide_name)
    if guide_name == "AutoDelta":
        family_mean = (a - 1) / (a + b - 2)  # the posterior mode
    else:
        m_opt, s_opt, family_mean = bb_logit_normal_optimum()
        q = guide.quantiles(params, [scipy.stats.norm.cdf(1.0)])  # loc + 1 scale
        loc = scipy.special.logit(float(guide.median(params)["p"]))
        scale = scipy.special.logit(float(q["p"][0])) - loc
        assert abs(loc - m_opt) <= TOL_SD * s_opt, (loc, m_opt)
        assert abs(np.log(scale / s_opt)) <= TOL_SD, (scale, s_opt)
    got = posterior_mean(guide_name, guide, params, "p")
    # Within the family's gap to the exact mean, plus the convergence tolerance
    # (and 4 standard errors of the 20,000-draw estimate of the guide's mean).
    gap = abs(family_mean - exact_mean)
    mc = 0.0 if guide_name == "AutoDelta" else 4 * exact_sd / np.sqrt(20_000)
    assert abs(got - family_mean) <= TOL_SD * exact_sd + mc, (got, family_mean)
    assert abs(got - exact_mean) <= gap + TOL_SD * exact_sd + mc


@pytest.mark.slow
@pytest.mark.parametrize("guide_name", list(GUIDES))
def test_linear_regression_posterior_mean(guide_name):
    mean, cov, _ = lr_exact()
    guide, params = fit("linear_regression", guide_name)
    got = np.asarray(guide.median(params)["w"])
    np.testing.assert_array_less(np.abs(got - mean), TOL_SD * np.sqrt(np.diag(cov)))


@pytest.mark.slow
def test_multivariate_normal_recovers_exact_covariance():
    _, cov, _ = lr_exact()
    guide, params = fit("linear_regression", "AutoMultivariateNormal")
    tril = np.asarray(params["auto_scale_tril"])
    got = tril @ tril.T
    # Entries compared in units of sd_i * sd_j: covariances within 0.1 of a
    # correlation unit, and the joint posterior distribution it gives.
    scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    np.testing.assert_array_less(np.abs(got - cov) / scale, TOL_SD)
    joint = guide.get_posterior(params)
    np.testing.assert_allclose(joint.covariance_matrix, got, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("guide_name", ["AutoNormal", "AutoDiagonalNormal"])
def test_mean_field_variances_are_inverse_precision_diagonal(guide_name):
    _, _, precision = lr_exact()
    guide, params = fit("linear_regression", guide_name)
    scale = params["w_auto_scale" if guide_name == "AutoNormal" else "auto_scale"]
    expected = 1 / np.sqrt(np.diag(precision))
    np.testing.assert_array_less(np.abs(np.log(np.asarray(scale) / expected)), TOL_SD)


# --- AutoDelta against a direct optimizer on the log-joint ----------------------------

MAP_X = np.asarray(jax.random.normal(jax.random.key(13), (15,))) * 2.0 + 1.0


def map_model(x):
    mu = jsvi.sample("mu", dist.Normal(0.0, 10.0))
    sigma = jsvi.sample("sigma", dist.Gamma(2.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(mu, sigma), obs=x)


def map_log_joint(theta):
    """log p(x, mu, sigma) written with scipy.stats, as a function of (mu, sigma)."""
    mu, sigma = theta
    return (
        scipy.stats.norm.logpdf(mu, 0.0, 10.0)
        + scipy.stats.gamma.logpdf(sigma, 2.0, scale=1.0)
        + scipy.stats.norm.logpdf(MAP_X, mu, sigma).sum()
    )


@pytest.mark.slow
def test_auto_delta_equals_map_of_a_direct_optimizer():
    # Direct: maximize the log-joint density over (mu, log sigma), a
    # reparameterization of the argument, which leaves the maximizer unchanged.
    res = scipy.optimize.minimize(
        lambda t: -map_log_joint((t[0], np.exp(t[1]))),
        [0.0, 0.0],
        method="BFGS",
        tol=1e-12,
    )
    expected = np.array([res.x[0], np.exp(res.x[1])])
    # Laplace standard deviations at the MAP, from a finite-difference Hessian.
    h = 1e-4
    hess = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):

            def f(di, dj, i=i, j=j):
                t = expected.copy()
                t[i] += di
                t[j] += dj
                return map_log_joint(t)

            hess[i, j] = (f(h, h) - f(h, -h) - f(-h, h) + f(-h, -h)) / (4 * h * h)
    laplace_sd = np.sqrt(np.diag(np.linalg.inv(-hess)))

    guide = AutoDelta(map_model)
    schedule = optax.exponential_decay(0.05, NUM_STEPS, 0.02)
    svi = jsvi.SVI(map_model, guide, optax.adam(schedule), jsvi.Trace_ELBO())
    state, _ = jsvi.svi_run(svi, 0, NUM_STEPS, jnp.asarray(MAP_X), progress_bar=False)
    point = guide.median(jsvi.get_params(svi, state))
    got = np.array([float(point["mu"]), float(point["sigma"])])
    # A Delta guide's gradient is exact (no sampling): the optimizers agree to a
    # hundredth of the posterior's width.
    np.testing.assert_array_less(np.abs(got - expected), 0.01 * laplace_sd)


@pytest.mark.slow
def test_auto_delta_with_flat_prior_is_maximum_likelihood():
    # sigma ~ Uniform(0, 100) is flat over the region that matters, so MAP is the
    # MLE, sqrt(mean(x^2)) for zero-mean Normal data. The Uniform's support has
    # array bounds: its point is stored unconstrained.
    def model(x):
        sigma = jsvi.sample("sigma", dist.Uniform(0.0, 100.0))
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", dist.Normal(0.0, sigma), obs=x)

    x = jnp.asarray(MAP_X - MAP_X.mean())
    mle = float(np.sqrt(np.mean(np.asarray(x) ** 2)))
    guide = AutoDelta(model)
    schedule = optax.exponential_decay(0.05, NUM_STEPS, 0.02)
    svi = jsvi.SVI(model, guide, optax.adam(schedule), jsvi.Trace_ELBO())
    state, _ = jsvi.svi_run(svi, 0, NUM_STEPS, x, progress_bar=False)
    params = jsvi.get_params(svi, state)
    assert set(params) == {"sigma_auto_loc_unconstrained"}
    # The MLE's standard error is sigma / sqrt(2 n).
    se = mle / np.sqrt(2 * x.shape[0])
    assert abs(float(guide.median(params)["sigma"]) - mle) <= 0.01 * se
