"""Minibatch subsampling: distinct, uniform indices and unbiased ELBO estimates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi.core.primitives import subsample_indices
from jsvi.testing import assert_mc_close


@pytest.mark.parametrize("size,subsample_size", [(50_000, 1_000), (5_000, 1_000), (100, 30), (10, 3)])
def test_indices_are_distinct_and_in_range(size, subsample_size):
    keys = jax.random.split(jax.random.key(0), 64)
    idx = np.asarray(jax.jit(jax.vmap(lambda k: subsample_indices(k, size, subsample_size)))(keys))
    assert idx.shape == (64, subsample_size)
    assert idx.min() >= 0 and idx.max() < size
    assert all(len(set(row.tolist())) == subsample_size for row in idx)


@pytest.mark.statistical
@pytest.mark.parametrize("size,subsample_size", [(400, 20), (60, 12)])
def test_every_index_is_included_with_probability_b_over_n(size, subsample_size):
    n = 4000
    keys = jax.random.split(jax.random.key(1), n)
    idx = jax.jit(jax.vmap(lambda k: subsample_indices(k, size, subsample_size)))(keys)
    included = np.zeros((n, size))
    np.put_along_axis(included, np.asarray(idx), 1.0, axis=1)
    # `size` scalars at z=4.5: ~1e-3 false failures in all (rows are Bernoulli).
    assert_mc_close(included, np.full(size, subsample_size / size), z=4.5)
    # pairs are as likely as under uniform subsets: P(i and j) = B(B-1) / (N(N-1))
    both = included[:, 0] * included[:, 1]
    pair = subsample_size * (subsample_size - 1) / (size * (size - 1))
    assert_mc_close(both, pair, z=4.0)


def test_fallback_path_when_draws_repeat_a_lot():
    from jsvi.core.primitives import _redraw_repeats

    # three distinct draws found, three slots still to fill from 10 indices
    is_first = jnp.array([True, False, False, True, False, True])
    for seed in range(5):
        out = np.asarray(
            _redraw_repeats(jax.random.key(seed), 10, jnp.array([3, 7, 1, 0, 0, 0]), is_first, None)
        )
        assert len(set(out.tolist())) == 6 and 0 <= out.min() and out.max() < 10


@pytest.mark.statistical
def test_minibatch_elbo_is_unbiased_for_the_full_batch_elbo():
    x = jax.random.normal(jax.random.key(2), (200,)) + 1.0

    def model(x, batch):
        mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
        with jsvi.plate("data", x.shape[0], subsample_size=batch) as idx:
            jsvi.sample("x", dist.Normal(mu, 1.0), obs=x[idx])

    def guide(x, batch):
        del x, batch
        jsvi.sample("mu", dist.Normal(jsvi.param("m", 0.8), jsvi.param("s", 0.1)))

    params = {"m": jnp.array(0.8), "s": jnp.array(0.1)}
    keys = jax.random.split(jax.random.key(3), 4000)
    elbo = jsvi.Trace_ELBO()
    mini = jax.jit(jax.vmap(lambda k: -elbo.loss(k, params, model, guide, x, 20)))(keys)
    full = jax.jit(jax.vmap(lambda k: -elbo.loss(k, params, model, guide, x, 200)))(keys)
    # The full-batch ELBO's expectation, from its own draws (its sd is small):
    # the minibatch mean must agree within the combined standard error.
    diff = np.asarray(mini) - np.asarray(full).mean()
    se_full = np.asarray(full).std(ddof=1) / np.sqrt(full.shape[0])
    assert abs(diff.mean()) <= 4.0 * np.sqrt(diff.var(ddof=1) / diff.shape[0] + se_full**2)
    assert np.asarray(mini).std() > 3 * np.asarray(full).std()  # minibatches vary
