"""AutoLaplaceApproximation (exact on Bayesian linear regression; the inverse
Hessian at the MAP on logistic regression), AutoGuideList, init_to_uniform and
init_to_mean."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.autoguide import (
    AutoDelta,
    AutoGuideList,
    AutoLaplaceApproximation,
    AutoNormal,
    init_to_mean,
    init_to_uniform,
)
from jsvi.core.trace import Site
from jsvi.errors import ModelGuideMismatchError

N, D, SIGMA, PRIOR_SD = 30, 3, 0.5, 2.0
_X = np.asarray(jax.random.normal(jax.random.key(0), (N, D)))
_W = np.array([1.0, -0.5, 0.25])


def linreg(x, y):
    w = jsvi.sample("w", dist.Normal(0.0, PRIOR_SD).expand((D,)).to_event(1))
    with jsvi.plate("n", x.shape[0]):
        jsvi.sample("y", dist.Normal(x @ w, SIGMA), obs=y)


def test_laplace_is_exact_on_bayesian_linear_regression():
    y = _X @ _W + SIGMA * np.asarray(jax.random.normal(jax.random.key(1), (N,)))
    precision = np.eye(D) / PRIOR_SD**2 + _X.T @ _X / SIGMA**2
    cov = np.linalg.inv(precision)
    mean = cov @ _X.T @ y / SIGMA**2
    guide = AutoLaplaceApproximation(linreg)
    svi = jsvi.SVI(linreg, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    state, _ = jsvi.svi_run(svi, jax.random.key(0), 1000, _X, y, progress_bar=False)
    params = jsvi.get_params(svi, state)
    q = guide.get_posterior(params, _X, y)
    sd = np.sqrt(np.diag(cov))
    # the MAP point: within 0.01 posterior sd of the exact mean
    np.testing.assert_array_less(np.abs(np.asarray(q.loc) - mean), 0.01 * sd)
    # the Hessian of a Gaussian log density is exact at any point (float32 rtol)
    np.testing.assert_allclose(q.covariance_matrix, cov, rtol=1e-4, atol=1e-7)
    quant = guide.quantiles(params, [0.5], _X, y)["w"][0]
    np.testing.assert_allclose(quant, q.loc, rtol=1e-6)
    draws = guide.sample_posterior(jax.random.key(2), params, _X, y, sample_shape=(4000,))
    assert draws["w"].shape == (4000, D)
    jsvi.testing.assert_mc_close(np.asarray(draws["w"]), mean, z=4.5)


def logreg(x, y):
    w = jsvi.sample("w", dist.Normal(0.0, PRIOR_SD).expand((D,)).to_event(1))
    with jsvi.plate("n", x.shape[0]):
        jsvi.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def _neg_log_joint(w, x, y):
    """Written out by hand: -log N(w; 0, PRIOR_SD^2) - sum log Bernoulli(y | x w)."""
    logits = x @ w
    log_lik = jnp.sum(y * logits - jnp.logaddexp(0.0, logits))
    log_prior = jnp.sum(-0.5 * (w / PRIOR_SD) ** 2 - jnp.log(PRIOR_SD)
                        - 0.5 * jnp.log(2 * jnp.pi))
    return -(log_lik + log_prior)


def test_laplace_is_the_inverse_hessian_at_the_map_on_logistic_regression():
    y = np.asarray(jax.random.bernoulli(jax.random.key(3), jax.nn.sigmoid(_X @ _W)), np.float32)
    guide = AutoLaplaceApproximation(logreg)
    svi = jsvi.SVI(logreg, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    state, _ = jsvi.svi_run(svi, jax.random.key(0), 1000, _X, y, progress_bar=False)
    q = guide.get_posterior(jsvi.get_params(svi, state), _X, y)
    hessian = jax.hessian(_neg_log_joint)(q.loc, _X, y)
    np.testing.assert_allclose(q.covariance_matrix, np.linalg.inv(hessian), rtol=1e-4)
    # q.loc is the MAP: the Newton step from it is below 0.01 posterior sd
    newton = np.linalg.solve(hessian, jax.grad(_neg_log_joint)(q.loc, _X, y))
    np.testing.assert_array_less(np.abs(newton), 0.01 * np.sqrt(np.diag(q.covariance_matrix)))


def hier(x):
    mu = jsvi.sample("mu", dist.Normal(0.0, 10.0))
    s = jsvi.sample("s", dist.LogNormal(0.0, 1.0))
    with jsvi.plate("j", x.shape[0]):
        z = jsvi.sample("z", dist.Normal(mu, s))
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


def test_guide_list_trains_and_returns_every_latent():
    x = jnp.array([0.5, 1.5, 3.0, 2.0])
    guide = AutoGuideList(hier, [
        AutoDelta(handlers.block(hier, expose=["mu", "s"])),
        AutoNormal(handlers.block(hier, hide=["mu", "s"])),
    ])
    svi = jsvi.SVI(hier, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    state, losses = jsvi.svi_run(svi, jax.random.key(0), 300, x, progress_bar=False)
    losses = np.asarray(losses)
    assert losses[-50:].mean() < losses[:50].mean()
    params = jsvi.get_params(svi, state)
    assert {"mu_auto_loc", "s_auto_loc", "z_auto_loc", "z_auto_scale"} <= set(params)
    med = guide.median(params)
    assert sorted(med) == ["mu", "s", "z"] and med["z"].shape == (4,)
    draws = guide.sample_posterior(jax.random.key(1), params, x, sample_shape=(5,))
    assert {k: v.shape for k, v in draws.items()} == {"mu": (5,), "s": (5,), "z": (5, 4)}
    assert guide.quantiles(params, [0.1, 0.9])["z"].shape == (2, 4)


def test_guide_list_names_uncovered_and_doubly_covered_sites():
    x = jnp.array([0.5, 1.5])
    seeded = lambda g: handlers.seed(g, rng_key=0)  # noqa: E731
    missing = AutoGuideList(hier, [AutoNormal(handlers.block(hier, hide=["mu"]))])
    with pytest.raises(ModelGuideMismatchError, match="'mu'"):
        seeded(missing)(x)
    twice = AutoGuideList(hier, [AutoNormal(handlers.block(hier, expose=["mu", "s"])),
                                 AutoNormal(handlers.block(hier, hide=["s"]),
                                            prefix="other")])
    with pytest.raises(ModelGuideMismatchError, match="'mu'"):
        seeded(twice)(x)


@pytest.mark.parametrize("radius", [0.5, 2.0])
def test_init_to_uniform_is_inside_the_unconstrained_box(radius):
    key = jax.random.key(0)
    real = init_to_uniform(radius=radius)(Site("sample", "a", fn=dist.Normal(5.0, 1.0)
                                               .expand((1000,))), key)
    pos = init_to_uniform(radius=radius)(Site("sample", "b", fn=dist.Gamma(2.0, 1.0)
                                              .expand((1000,))), key)
    assert np.all(np.abs(real) < radius) and np.max(np.abs(real)) > 0.9 * radius
    assert np.all(np.abs(np.log(pos)) < radius)
    with pytest.raises(jsvi.errors.ArgumentError, match="radius"):
        init_to_uniform(radius=0.0)


def test_init_to_mean():
    key = jax.random.key(0)
    np.testing.assert_allclose(
        init_to_mean(Site("sample", "g", fn=dist.Gamma(jnp.array([2.0, 3.0]), 4.0)), key),
        [0.5, 0.75], rtol=1e-6)
    cauchy = init_to_mean(Site("sample", "c", fn=dist.Cauchy(1.0, 0.1)), key)
    assert np.isfinite(cauchy)  # no mean: the prior median instead
