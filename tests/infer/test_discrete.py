"""``jsvi.infer_discrete``: at temperature 0 the brute-force argmax over every
joint assignment; at temperature 1 draws whose frequencies match the exact
posterior (brute force) within standard errors, across plates and along a
``markov`` chain."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.errors import ArgumentError
from jsvi.testing import assert_mc_close

W = jnp.array([0.5, 0.3, 0.2])
PROBS = jnp.array([0.1, 0.5, 0.9])
SHIFT = jnp.array([-0.5, 0.0, 0.5])
X = jnp.array([0.2, 2.4, -0.3, 1.9])


@jsvi.config_enumerate
def global_local(x):
    g = jsvi.sample("g", dist.Categorical(W))
    with jsvi.plate("data", x.shape[0]):
        c = jsvi.sample("c", dist.Bernoulli(PROBS[g]))
        jsvi.sample("x", dist.Normal(2.0 * c + SHIFT[g], 1.0), obs=x)


def global_local_joint():
    """log p(g, c, x) for every (g, c_1..c_4): arrays (48,), (48,), (48, 4)."""
    rows = list(itertools.product(range(3), itertools.product(range(2), repeat=4)))
    g = np.array([r[0] for r in rows])
    c = np.array([r[1] for r in rows], dtype=np.float64)
    w, p, s = (np.asarray(a, np.float64) for a in (W, PROBS, SHIFT))
    x = np.asarray(X, np.float64)
    log_lik = -0.5 * (x - 2.0 * c - s[g][:, None]) ** 2
    log_c = c * np.log(p[g])[:, None] + (1 - c) * np.log1p(-p[g])[:, None]
    return np.log(w[g]) + np.sum(log_c + log_lik, 1), g, c


K = 3
INIT = jnp.array([0.6, 0.3, 0.1])
TRANS = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
LOCS = jnp.array([-1.0, 0.5, 2.0])
Y = jnp.array([[0.1, 1.8, 2.2, -0.5], [-0.4, 0.3, 2.9, 1.0]])  # (sequences, T)


@jsvi.config_enumerate
def hmm(ys):
    with jsvi.plate("sequences", ys.shape[0]):
        s = None
        for t in jsvi.markov(range(ys.shape[1])):
            s = jsvi.sample(f"s_{t}", dist.Categorical(INIT if s is None else TRANS[s]))
            jsvi.sample(f"y_{t}", dist.Normal(LOCS[s], 1.0), obs=ys[:, t])


def hmm_joint(y):
    """log p(path, y) for every path of one sequence: (K**T,), paths (K**T, T)."""
    paths = np.array(list(itertools.product(range(K), repeat=y.shape[0])))
    init, trans, locs = (np.asarray(a, np.float64) for a in (INIT, TRANS, LOCS))
    lp = np.log(init[paths[:, 0]]) + np.sum(
        np.log(trans[paths[:, :-1], paths[:, 1:]]), 1
    )
    lp += np.sum(-0.5 * (np.asarray(y, np.float64) - locs[paths]) ** 2, 1)
    return lp, paths


def _map(model, names, arg):
    def run(arg):
        tr = handlers.trace(jsvi.infer_discrete(model, temperature=0)).get_trace(arg)
        return [tr[n].value for n in names]

    return [np.asarray(v) for v in jax.jit(run)(arg)]


def test_temperature_zero_is_the_joint_argmax_across_plates():
    g_map, c_map = _map(global_local, ["g", "c"], X)
    lp, g, c = global_local_joint()
    best = np.argmax(lp)
    assert int(g_map) == g[best]
    np.testing.assert_array_equal(np.asarray(c_map), c[best])


def test_temperature_zero_is_the_viterbi_path_of_a_markov_chain():
    got = np.stack(_map(hmm, [f"s_{t}" for t in range(Y.shape[1])], Y), 1)
    for n in range(Y.shape[0]):
        lp, paths = hmm_joint(Y[n])
        np.testing.assert_array_equal(got[n], paths[np.argmax(lp)])


def _draws(model, names, arg, num=2000):
    def one(key):
        tr = handlers.trace(jsvi.infer_discrete(model, rng_key=key)).get_trace(arg)
        return [tr[n].value for n in names]

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), num))


@pytest.mark.statistical
def test_temperature_one_matches_the_exact_posterior_across_plates():
    g_draws, c_draws = _draws(global_local, ["g", "c"], X)
    lp, g, c = global_local_joint()
    post = np.exp(lp - np.logaddexp.reduce(lp))
    # posterior marginals of g, of each c_i, and of a joint event (g = 2 and c_1 = 1)
    for k in range(3):
        assert_mc_close(np.asarray(g_draws == k, float), post[g == k].sum(), z=4.5)
    assert_mc_close(np.asarray(c_draws, float), post @ c, z=4.5)
    joint = np.asarray((g_draws == 2) & (c_draws[:, 1] == 1), float)
    assert_mc_close(joint, post[(g == 2) & (c[:, 1] == 1)].sum(), z=4.5)


@pytest.mark.statistical
def test_temperature_one_matches_the_exact_posterior_along_a_chain():
    names = [f"s_{t}" for t in range(Y.shape[1])]
    draws = np.stack([np.asarray(d) for d in _draws(hmm, names, Y)], -1)  # (n, N, T)
    for n in range(Y.shape[0]):
        lp, paths = hmm_joint(Y[n])
        post = np.exp(lp - np.logaddexp.reduce(lp))
        for k in range(K):
            marginal = np.array([post[paths[:, t] == k].sum() for t in range(4)])
            assert_mc_close(np.asarray(draws[:, n] == k, float), marginal, z=4.5)
        # a joint statistic: consecutive states equal (fails for independent draws)
        same = np.asarray(draws[:, n, 0] == draws[:, n, 1], float)
        assert_mc_close(same, post[paths[:, 0] == paths[:, 1]].sum(), z=4.5)


def test_bad_arguments_are_errors():
    with pytest.raises(ArgumentError, match="temperature"):
        jsvi.infer_discrete(hmm, temperature=0.5)
    with pytest.raises(ArgumentError, match="rng_key"):
        jsvi.infer_discrete(hmm, temperature=1)


@pytest.mark.statistical
def test_predictive_with_infer_discrete_matches_the_exact_posterior():
    draws = jsvi.Predictive(global_local, num_samples=2000, infer_discrete=True)(
        jax.random.key(3), X
    )
    lp, g, c = global_local_joint()
    post = np.exp(lp - np.logaddexp.reduce(lp))
    for k in range(3):
        assert_mc_close(np.asarray(draws["g"] == k, float), post[g == k].sum(), z=4.5)
    assert_mc_close(np.asarray(draws["c"], float), post @ c, z=4.5)
