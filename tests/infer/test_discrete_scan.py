"""``infer_discrete`` on chains written with ``jsvi.scan``: decided inside the
loop (Viterbi at temperature 0, forward filtering with backward sampling at
temperature 1), against a sum over every path."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _exact import viterbi_path

import jsvi
import jsvi.distributions as dist
from jsvi import handlers

Z = 4.5  # about 10 scalars per sequence


def assert_frequency(hits, p):
    """Frequencies of events against exact probabilities ``p``, within ``Z``
    binomial standard errors ``sqrt(p (1 - p) / n)`` (from the exact ``p``: a
    rare event may well come up zero times), plus one draw's worth, ``1 / n``,
    the resolution of a frequency."""
    hits = np.asarray(hits, float)
    n = hits.shape[0]
    se = np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / n)
    err = np.abs(hits.mean(0) - p)
    assert np.all(err <= Z * se + 1.0 / n), (hits.mean(0), p, se)

K = 3
INIT = jnp.array([0.6, 0.3, 0.1])
TRANS = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
LOCS = jnp.array([-1.0, 0.5, 2.0])
Y = jnp.array([[0.1, 1.8, 2.2, -0.5], [-0.4, 0.3, 2.9, 1.0]])  # (sequences, T)


def _step(s, y):
    s = jsvi.sample("s", dist.Categorical(TRANS[s]))
    jsvi.sample("y", dist.Normal(LOCS[s], 1.0), obs=y)
    return s, None


@jsvi.config_enumerate
def carried(ys):
    """The first state outside the loop, carried into it."""
    with jsvi.plate("sequences", ys.shape[0]):
        s0 = jsvi.sample("s0", dist.Categorical(INIT))
        jsvi.sample("y0", dist.Normal(LOCS[s0], 1.0), obs=ys[:, 0])
        jsvi.scan(_step, s0, ys[:, 1:].T)


def _path(tr):
    """(sequences, T) states of one trace of ``carried``."""
    return jnp.concatenate([tr["s0"].value[:, None], tr["s"].value.reshape(-1, 2).T], 1)


def hmm_joint(y):
    """log p(path, y) for every path of one sequence: (K**T,), paths (K**T, T)."""
    paths = np.array(list(itertools.product(range(K), repeat=y.shape[0])))
    init, trans, locs = (np.asarray(a, np.float64) for a in (INIT, TRANS, LOCS))
    lp = np.log(init[paths[:, 0]]) + np.sum(
        np.log(trans[paths[:, :-1], paths[:, 1:]]), 1
    )
    lp += np.sum(-0.5 * (np.asarray(y, np.float64) - locs[paths]) ** 2, 1)
    return lp, paths


def test_temperature_zero_is_the_viterbi_path():
    run = jax.jit(
        lambda ys: _path(
            handlers.trace(jsvi.infer_discrete(carried, temperature=0)).get_trace(ys)
        )
    )
    got = np.asarray(run(Y))
    for n in range(Y.shape[0]):
        lp, paths = hmm_joint(Y[n])
        np.testing.assert_array_equal(got[n], paths[np.argmax(lp)])


@pytest.mark.statistical
def test_temperature_one_matches_the_exact_posterior():
    def one(key):
        tr = handlers.trace(jsvi.infer_discrete(carried, rng_key=key)).get_trace(Y)
        return _path(tr)

    keys = jax.random.split(jax.random.key(0), 2000)
    draws = np.asarray(jax.jit(jax.vmap(one))(keys))  # (draws, N, T)
    for n in range(Y.shape[0]):
        lp, paths = hmm_joint(Y[n])
        post = np.exp(lp - np.logaddexp.reduce(lp))
        for k in range(K):
            marginal = np.array([post[paths[:, t] == k].sum() for t in range(4)])
            assert_frequency(draws[:, n] == k, marginal)
        # joint statistics: consecutive states equal (fails for independent draws)
        for t in (0, 2):
            same = draws[:, n, t] == draws[:, n, t + 1]
            assert_frequency(same, post[paths[:, t] == paths[:, t + 1]].sum())


def viterbi(y):
    """The best path of one sequence, by dynamic programming in float64."""
    init, trans, locs = (np.asarray(a, np.float64) for a in (INIT, TRANS, LOCS))
    log_obs = -0.5 * (np.asarray(y, np.float64)[:, None] - locs) ** 2
    return viterbi_path(np.log(init), np.log(trans), log_obs)


def test_long_chain_viterbi_is_linear_and_exact():
    ys = jax.random.normal(jax.random.key(2), (2, 1000)) + LOCS[
        jnp.arange(1000) // 50 % 3
    ]
    got = jax.jit(
        lambda ys: _path(
            handlers.trace(jsvi.infer_discrete(carried, temperature=0)).get_trace(ys)
        )
    )(ys)
    for n in range(2):
        np.testing.assert_array_equal(np.asarray(got[n]), viterbi(ys[n]))
