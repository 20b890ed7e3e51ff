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


@pytest.mark.statistical
def test_draws_short_of_distinct_indices_are_redrawn_and_stay_uniform():
    from jsvi.core.plates import _distinct_indices

    # 12 draws from 40 for 10 distinct: about 16% of first draws fall short
    # and are drawn again. Accepted draws must still be distinct and uniform.
    size, b, n = 40, 10, 4000
    keys = jax.random.split(jax.random.key(4), n)
    idx = np.asarray(jax.jit(jax.vmap(lambda k: _distinct_indices(k, size, b, 12)))(keys))
    assert all(len(set(row.tolist())) == b for row in idx)
    first = np.asarray(
        jax.vmap(lambda k: jax.random.randint(jax.random.split(k)[1], (12,), 0, size, dtype=jnp.int32))(keys)
    )
    short = np.mean([len(set(row.tolist())) < b for row in first])
    assert short > 0.1  # the redraw path really ran
    included = np.zeros((n, size))
    np.put_along_axis(included, idx, 1.0, axis=1)
    assert_mc_close(included, np.full(size, b / size), z=4.5)


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


@pytest.mark.parametrize("size,subsample_size", [(50_000, 1_000), (40, 10), (100, 30)])
def test_sorted_and_table_repeat_finding_pick_the_same_indices(size, subsample_size, monkeypatch):
    import jsvi.core.plates as P

    keys = jax.random.split(jax.random.key(5), 4)
    total = subsample_size + 2  # few spares: some draws are redrawn

    def draw(k):
        return P._distinct_indices(k, size, subsample_size, total)

    table = np.asarray(jax.jit(jax.vmap(draw))(keys))
    monkeypatch.setattr(P, "_TABLE_MAX", 0)  # every size takes the sort
    sorted_ = np.asarray(jax.jit(jax.vmap(lambda k: draw(k)))(keys))
    np.testing.assert_array_equal(sorted_, table)


def test_large_plates_draw_distinct_indices_without_an_n_slot_table():
    size, b = 10_000_000, 1_000
    program = jax.jit(lambda k: subsample_indices(k, size, b)).lower(jax.random.key(0))
    assert f"tensor<{size}x" not in program.as_text()  # no array of N slots anywhere
    idx = np.asarray(jax.jit(lambda k: subsample_indices(k, size, b))(jax.random.key(6)))
    assert len(set(idx.tolist())) == b and idx.min() >= 0 and idx.max() < size
