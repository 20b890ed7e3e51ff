"""Sampling: shapes, support, Monte Carlo means and reparameterized gradients.

Statistical checks compare a Monte Carlo mean with its analytic value using
``|mean - truth| <= z * se`` with ``se = std / sqrt(n)`` taken from the draws
(``z = 4.5`` since each test checks up to ~10 scalars).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special as ss

import jsvi.distributions as dist

N = 4000
Z = 4.5


def assert_mc_close(draws, expected, z=Z):
    draws = np.asarray(draws, dtype=np.float64)
    n = draws.shape[0]
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / np.sqrt(n)
    err = np.abs(mean - np.asarray(expected))
    assert np.all(err <= z * se + 1e-6), (
        f"MC mean {mean} vs expected {expected}: |err| {err} exceeds {z} standard "
        f"errors ({z * se}, n={n})."
    )


def f32(x):
    return np.asarray(x, dtype=np.float32)


# name -> distribution with batch shape (2,) and the given event shape
FAMILIES = {
    "Normal": dist.Normal(f32([0.0, 1.0]), f32([1.0, 2.0])),
    "LogNormal": dist.LogNormal(f32([0.0, 0.5]), f32([0.3, 0.5])),
    "HalfNormal": dist.HalfNormal(f32([1.0, 2.0])),
    "HalfCauchy": dist.HalfCauchy(f32([1.0, 2.0])),
    "Cauchy": dist.Cauchy(f32([0.0, 1.0]), 1.0),
    "Laplace": dist.Laplace(f32([0.0, 1.0]), f32([1.0, 0.5])),
    "StudentT": dist.StudentT(f32([5.0, 10.0]), 1.0, 2.0),
    "Uniform": dist.Uniform(f32([0.0, -2.0]), f32([1.0, 3.0])),
    "Beta": dist.Beta(f32([0.5, 2.0]), f32([2.0, 3.0])),
    "Gamma": dist.Gamma(f32([0.5, 3.0]), f32([1.0, 2.0])),
    "Exponential": dist.Exponential(f32([1.0, 3.0])),
    "Dirichlet": dist.Dirichlet(f32([[0.5, 1.0, 2.0], [3.0, 3.0, 3.0]])),
    "MultivariateNormal": dist.MultivariateNormal(
        f32([[0.0, 1.0], [2.0, -1.0]]), f32([[1.0, 0.8], [0.8, 2.0]])
    ),
    "LowRankMultivariateNormal": dist.LowRankMultivariateNormal(
        f32([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]]), f32([[1.0], [0.5], [-1.0]]), f32(0.5)
    ),
    "Delta": dist.Delta(f32([1.0, 2.0])),
    "Bernoulli": dist.Bernoulli(f32([0.2, 0.9])),
    "Binomial": dist.Binomial(f32([3.0, 10.0]), f32([0.3, 0.6])),
    "Categorical": dist.Categorical(f32([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])),
    "OneHotCategorical": dist.OneHotCategorical(logits=f32([[0.0, 1.0, 2.0]] * 2)),
    "Poisson": dist.Poisson(f32([0.5, 20.0])),
}
# Families whose mean is finite, checked by Monte Carlo.
WITH_MEAN = [n for n in FAMILIES if n not in ("Cauchy", "HalfCauchy", "Categorical")]


def _draw(d, key):
    x = d.sample(key, (N,))
    return x, d.support.check(x), d.log_prob(x), d.mean


@pytest.fixture(scope="module")
def draws():
    """Draws of every family, compiled as one program (much faster than one per
    family: the gamma-based samplers dominate compile time)."""

    @jax.jit
    def run(families, key):
        keys = jax.random.split(key, len(families))
        return {n: _draw(d, k) for (n, d), k in zip(families.items(), keys)}

    return run(FAMILIES, jax.random.key(0))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_sample_shape_support_dtype_and_mean(name, draws):
    d = FAMILIES[name]
    assert d.batch_shape == (2,)
    x, in_support, lp, mean = draws[name]
    assert x.shape == (N, 2) + d.event_shape == d.shape((N,))
    assert in_support.shape == (N, 2) and bool(jnp.all(in_support))
    assert lp.shape == (N, 2) and bool(jnp.all(jnp.isfinite(lp)))
    assert d.is_discrete == jnp.issubdtype(x.dtype, jnp.integer)
    if name in WITH_MEAN:
        assert_mc_close(x, mean)


def test_sample_shapes_for_nested_sample_batch_and_event_dims():
    def shapes():
        mvn = dist.MultivariateNormal(
            jnp.zeros((4, 1, 3)), jnp.ones((5, 1, 1)) * jnp.eye(3)
        )
        normal = dist.Normal(jnp.zeros((2, 1)), jnp.ones(3))
        key = jax.random.key(1)
        return mvn.sample(key, (2, 3)), mvn.sample(key, 7), normal.sample(key)

    mvn23, mvn7, normal = jax.eval_shape(shapes)  # traces without compiling
    assert mvn23.shape == (2, 3, 4, 5, 3)
    assert mvn7.shape == (7, 4, 5, 3)
    assert normal.shape == (2, 3)


def test_raw_and_typed_keys_give_the_same_draws():
    d = dist.Normal(0.0, 1.0)
    np.testing.assert_array_equal(
        d.sample(jax.random.PRNGKey(3), (4,)),
        d.sample(jax.random.wrap_key_data(jax.random.PRNGKey(3)), (4,)),
    )


def test_variance_of_normal_and_gamma_draws(draws):
    for name in ["Normal", "Gamma"]:
        x, _, _, mean = draws[name]
        assert_mc_close(jnp.square(x - mean), FAMILIES[name].variance)


def _pathwise_grads(fn, theta):
    """Per-draw derivatives d f(x_i(theta)) / d theta, shape (N,), by forward mode."""
    return jax.jit(jax.jacfwd(fn))(jnp.float32(theta))


def test_normal_pathwise_gradient_of_mean_square():
    # E[x^2] = loc^2 + scale^2  =>  d/dloc = 2 loc, d/dscale = 2 scale
    loc, scale, key = 0.7, 1.3, jax.random.key(3)
    g_loc = _pathwise_grads(lambda m: dist.Normal(m, scale).sample(key, (N,)) ** 2, loc)
    assert_mc_close(g_loc, 2 * loc, z=4.0)
    g_scale = _pathwise_grads(
        lambda s: dist.Normal(loc, s).sample(key, (N,)) ** 2, scale
    )
    assert_mc_close(g_scale, 2 * scale, z=4.0)


def test_gamma_implicit_reparameterized_gradients():
    a, rate, key = 2.5, 1.5, jax.random.key(4)

    def draws(c):
        x = dist.Gamma(c, rate).sample(key, (N,))
        return jnp.stack([x, jnp.log(x)], axis=-1)

    g = _pathwise_grads(draws, a)
    # E[x] = a / rate => d/da = 1 / rate; E[log x] = digamma(a) - log(rate) =>
    # d/da = trigamma(a)
    assert_mc_close(g, [1 / rate, ss.polygamma(1, a)], z=4.0)


def test_beta_implicit_reparameterized_gradients_and_variance():
    # Beta draws are a sigmoid of two log-gamma draws; check their variance and
    # the pathwise gradients of the mean, E[x] = a / (a + b):
    # d/da = b / (a + b)^2 and d/db = -a / (a + b)^2.
    a, b, key = 2.0, 3.0, jax.random.key(5)
    x = dist.Beta(a, b).sample(key, (N,))
    assert_mc_close(jnp.square(x - a / (a + b)), a * b / ((a + b) ** 2 * (a + b + 1)))
    g_a = _pathwise_grads(lambda c: dist.Beta(c, b).sample(key, (N,)), a)
    assert_mc_close(g_a, b / (a + b) ** 2, z=4.0)
    g_b = _pathwise_grads(lambda c: dist.Beta(a, c).sample(key, (N,)), b)
    assert_mc_close(g_b, -a / (a + b) ** 2, z=4.0)


def test_beta_draws_with_tiny_concentrations_stay_inside_the_support():
    # With concentrations 0.02 nearly all mass sits at the ends; draws are
    # clipped into (0, 1), so log-densities stay finite, and the mean is right.
    d = dist.Beta(jnp.float32(0.02), jnp.float32(0.03))
    x = d.sample(jax.random.key(6), (N,))
    assert bool(jnp.all((x > 0) & (x < 1)))
    assert bool(jnp.all(jnp.isfinite(d.log_prob(x))))
    assert_mc_close(x, 0.4)


def test_reparameterization_flags():
    for name, d in FAMILIES.items():
        assert d.has_rsample == (not d.is_discrete), name
    nr = dist.NonReparameterized(dist.Normal(0.0, 1.0))
    assert not nr.has_rsample
    assert not nr.to_event(0).has_rsample
    assert (
        not dist.NonReparameterized(dist.Normal(jnp.zeros(2), 1.0))
        .to_event()
        .has_rsample
    )
