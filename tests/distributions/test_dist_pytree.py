"""Distributions are pytrees: jit and vmap over functions taking/returning them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi.distributions as dist
from jsvi import transforms as T


def f32(x):
    return np.asarray(x, dtype=np.float32)


LOC = f32([0.0, 1.0, 2.0])

# Each maker takes a (3,)-vector and returns a distribution with batch (3,)
# (Delta, Independent: batch (), event (3,)).
MAKERS = {
    "Normal": lambda m: dist.Normal(m, 1.0),
    "Gamma": lambda m: dist.Gamma(jnp.exp(m), 2.0),
    "Categorical": lambda m: dist.Categorical(logits=jnp.stack([m, -m], -1)),
    "Binomial": lambda m: dist.Binomial(4, logits=m),
    "MultivariateNormal": lambda m: dist.MultivariateNormal(
        jnp.stack([m, m], -1), scale_tril=jnp.eye(2) * 2.0
    ),
    "Delta": lambda m: dist.Delta(m, event_dim=1),
    "Independent": lambda m: dist.Normal(m, 1.0).to_event(1),
    "Expanded": lambda m: dist.ExpandedDistribution(dist.Normal(m[0], 1.0), (3,)),
    "Masked": lambda m: dist.Normal(m, 1.0).mask(m > 0.5),
    "Transformed": lambda m: dist.TransformedDistribution(
        dist.Normal(m, 1.0),
        [T.AffineTransform(m, jnp.full_like(m, 2.0)), T.ExpTransform()],
    ),
    "NonReparameterized": lambda m: dist.NonReparameterized(dist.Normal(m, 1.0)),
    "TruncatedNormal": lambda m: dist.TruncatedNormal(m, 1.0, low=-1.0),
    "ZeroInflatedPoisson": lambda m: dist.ZeroInflatedPoisson(0.3, jnp.exp(m)),
    "MixtureSameFamily": lambda m: dist.MixtureSameFamily(
        dist.Categorical(logits=jnp.zeros(2)),
        dist.Normal(jnp.stack([m, -m], -1), 1.0),
    ),
    "MixtureGeneral": lambda m: dist.MixtureGeneral(
        dist.Categorical(logits=jnp.zeros(2)),
        [dist.Normal(m, 1.0), dist.Gumbel(0.0, 1.0)],
    ),
    "LKJCholesky": lambda m: dist.LKJCholesky(2, jnp.exp(m)),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_jit_and_vmap_over_functions_returning_distributions(name):
    make = MAKERS[name]
    eager = make(LOC)

    x = eager.support.feasible_like(jnp.zeros(eager.shape()))

    @jax.jit
    def run(m):
        d = make(m)
        return d, d.log_prob(x)

    d_jit, lp_jit = run(LOC)
    assert type(d_jit) is type(eager)
    assert (d_jit.batch_shape, d_jit.event_shape) == (
        eager.batch_shape,
        eager.event_shape,
    )
    np.testing.assert_allclose(lp_jit, eager.log_prob(x), rtol=1e-5)

    def stacked(ms):
        d = jax.vmap(make)(ms)  # a mapped leading batch dim on every leaf
        return d, d.sample(jax.random.key(1)), d.log_prob(x)

    # Shapes only: trace without compiling.
    d, draw, lp = jax.eval_shape(stacked, jnp.stack([LOC, LOC + 1]))
    assert d.batch_shape == (2,) + eager.batch_shape
    assert d.event_shape == eager.event_shape
    assert draw.shape == (2,) + x.shape
    assert lp.shape == (2,) + eager.batch_shape


def test_jit_taking_a_distribution_and_cache_reuse():
    traces = []

    @jax.jit
    def log_prob(d, x):
        traces.append(None)
        return d.log_prob(x)

    x = f32([0.5, 0.5, 0.5])
    a = log_prob(dist.Normal(LOC, 1.0), x)
    b = log_prob(dist.Normal(LOC + 1, 2.0), x)
    assert len(traces) == 1  # same structure and shapes: compiled once
    np.testing.assert_allclose(b, dist.Normal(LOC + 1, 2.0).log_prob(x), rtol=1e-6)
    assert not np.allclose(a, b)


def test_vmap_taking_a_distribution():
    d = dist.Normal(f32([[0.0, 1.0], [2.0, 3.0]]), 1.0)
    lp = jax.vmap(lambda d: d.log_prob(0.0))(d)
    np.testing.assert_allclose(lp, d.log_prob(0.0), rtol=1e-6)
    draws = jax.vmap(lambda d, k: d.sample(k))(
        d, jax.random.split(jax.random.key(0), 2)
    )
    assert draws.shape == (2, 2)


def test_leaves_are_the_array_parameters():
    d = dist.Normal(LOC, 2.0)
    leaves = jax.tree_util.tree_leaves(d)
    assert len(leaves) == 2
    doubled = jax.tree_util.tree_map(lambda v: 2 * v, d)
    assert isinstance(doubled, dist.Normal)
    np.testing.assert_allclose(doubled.scale, 4.0 * np.ones(3))
    assert len(jax.tree_util.tree_leaves(dist.Bernoulli(0.3))) == 1
    assert len(jax.tree_util.tree_leaves(dist.Normal(LOC, 1.0).to_event(1))) == 2
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(d)]
    assert paths == [".loc", ".scale"]


def test_static_count_survives_jit_for_enumeration():
    @jax.jit
    def enumerate_lp(p):
        d = dist.Binomial(3, probs=p)
        return d.log_prob(d.enumerate_support(expand=False))

    lp = enumerate_lp(f32([0.2, 0.5]))
    assert lp.shape == (4, 2)
    np.testing.assert_allclose(jnp.exp(lp).sum(0), [1.0, 1.0], rtol=1e-5)


def test_grad_through_log_prob_of_a_distribution_argument():
    def loss(d):
        return d.log_prob(f32([0.0, 1.0, 2.0])).sum()

    grads = jax.grad(loss)(dist.Normal(LOC + 1.0, 1.0))
    assert isinstance(grads, dist.Normal)
    np.testing.assert_allclose(grads.loc, -np.ones(3), rtol=1e-6)  # (x - loc) / scale^2
