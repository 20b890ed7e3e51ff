"""``infer_discrete`` on chains written with ``jsvi.markov``: decided in one
forward and one backward pass (Viterbi at temperature 0, forward filtering with
backward sampling at temperature 1), against a sum over every path, a float64
Viterbi at T = 1,000, and ``Predictive(..., infer_discrete=True)``; first- and
second-order chains, plates around and inside the loop, and enumerated sites
before, after and (as a ``jsvi.scan``) following the chain."""

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

Z = 4.0

K = 3
INIT = jnp.array([0.6, 0.3, 0.1])
TRANS = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
LOCS = jnp.array([-1.0, 0.5, 2.0])
# (sequences, T, observations per step)
Y = jnp.array(
    [
        [[0.1, 0.4], [1.8, 0.9], [2.2, 1.7], [-0.5, 0.2], [0.6, -1.1]],
        [[-0.4, -1.3], [0.3, 0.1], [2.9, 1.2], [1.0, 2.4], [-0.2, 0.5]],
    ]
)


@jsvi.config_enumerate
def hmm(ys):
    """A chain per sequence (plate around the loop); several observations per
    step (plate inside it)."""
    with jsvi.plate("sequences", ys.shape[0], dim=-2):
        s = None
        for t in jsvi.markov(range(ys.shape[1])):
            s = jsvi.sample(f"s_{t}", dist.Categorical(INIT if s is None else TRANS[s]))
            with jsvi.plate(f"obs_{t}", ys.shape[2], dim=-1):
                jsvi.sample(f"y_{t}", dist.Normal(LOCS[s], 1.0), obs=ys[:, t])


def names(num_steps):
    return [f"s_{t}" for t in range(num_steps)]


def hmm_joint(y):
    """log p(path, y) for every path of one sequence ``y`` (T, obs):
    (K**T,), paths (K**T, T)."""
    y = np.asarray(y, np.float64)
    paths = np.array(list(itertools.product(range(K), repeat=y.shape[0])))
    init, trans, locs = (np.asarray(a, np.float64) for a in (INIT, TRANS, LOCS))
    lp = np.log(init[paths[:, 0]]) + np.sum(
        np.log(trans[paths[:, :-1], paths[:, 1:]]), 1
    )
    lp += np.sum(-0.5 * (y[None] - locs[paths][..., None]) ** 2, (1, 2))
    return lp, paths


def path_of(tr, num_steps):
    """(sequences, T) states of one trace of ``hmm``."""
    return jnp.stack([tr[n].value.reshape(-1) for n in names(num_steps)], 1)


def assert_frequency(hits, p):
    """Frequencies of events (draws along axis 0) against exact probabilities
    ``p``, within ``Z`` binomial standard errors ``sqrt(p (1 - p) / n)``, plus
    one draw's worth, ``1 / n``, the resolution of a frequency (an event of
    probability 1e-4 may well come up zero times in 2,000 draws)."""
    hits = np.asarray(hits, float)
    n = hits.shape[0]
    se = np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / n)
    err = np.abs(hits.mean(0) - p)
    assert np.all(err <= Z * se + 1.0 / n), (hits.mean(0), p, se)


def test_temperature_zero_is_the_brute_force_argmax_path():
    run = jax.jit(
        lambda ys: path_of(
            handlers.trace(jsvi.infer_discrete(hmm, temperature=0)).get_trace(ys), 5
        )
    )
    got = np.asarray(run(Y))
    for n in range(Y.shape[0]):
        lp, paths = hmm_joint(Y[n])
        np.testing.assert_array_equal(got[n], paths[np.argmax(lp)])


def exact_marginals(y):
    """Posterior marginals of one sequence: (T, K) single-site and the
    probability that consecutive states are equal, (T - 1,)."""
    lp, paths = hmm_joint(y)
    post = np.exp(lp - np.logaddexp.reduce(lp))
    steps = paths.shape[1]
    single = np.array([[post[paths[:, t] == k].sum() for k in range(K)] for t in range(steps)])
    same = np.array([post[paths[:, t] == paths[:, t + 1]].sum() for t in range(steps - 1)])
    pair = post[(paths[:, 1] == 2) & (paths[:, 2] == 2)].sum()
    return single, same, pair


@pytest.mark.statistical
def test_temperature_one_matches_the_exact_posterior_marginals():
    def one(key):
        tr = handlers.trace(jsvi.infer_discrete(hmm, rng_key=key)).get_trace(Y)
        return path_of(tr, 5)

    draws = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), 2000)))
    check_draws(draws)


def check_draws(draws):
    """``draws`` (n, sequences, T) against the exact posterior of each sequence:
    every single-site marginal, and pairwise ones (consecutive states equal;
    states 1 and 2 both 2), which independent per-site draws would miss."""
    for n in range(Y.shape[0]):
        single, same, pair = exact_marginals(Y[n])
        for k in range(K):
            assert_frequency(draws[:, n] == k, single[:, k])
        assert_frequency(draws[:, n, 1:] == draws[:, n, :-1], same)
        assert_frequency((draws[:, n, 1] == 2) & (draws[:, n, 2] == 2), pair)


@pytest.mark.statistical
def test_predictive_with_infer_discrete_matches_the_exact_posterior():
    out = jsvi.Predictive(hmm, num_samples=2000, infer_discrete=True)(
        jax.random.key(3), Y
    )
    draws = np.stack([np.asarray(out[n]).reshape(2000, -1) for n in names(5)], -1)
    check_draws(draws)


def viterbi(y):
    """The best path of one sequence ``y`` (T, obs), by dynamic programming
    in float64."""
    init, trans, locs = (np.asarray(a, np.float64) for a in (INIT, TRANS, LOCS))
    y = np.asarray(y, np.float64)
    log_obs = np.sum(-0.5 * (y[:, None, :] - locs[None, :, None]) ** 2, -1)
    return viterbi_path(np.log(init), np.log(trans), log_obs)


@jsvi.config_enumerate
def flat_hmm(ys):
    """``hmm`` with one observation per step (no plate inside the loop)."""
    with jsvi.plate("sequences", ys.shape[0]):
        s = None
        for t in jsvi.markov(range(ys.shape[1])):
            s = jsvi.sample(f"s_{t}", dist.Categorical(INIT if s is None else TRANS[s]))
            jsvi.sample(f"y_{t}", dist.Normal(LOCS[s], 1.0), obs=ys[:, t])


def test_long_chain_viterbi_is_exact():
    """T = 1,000: the site-by-site decision would take T model runs here."""
    steps = 1000
    regime = LOCS[jnp.arange(steps) // 50 % 3]
    ys = jax.random.normal(jax.random.key(2), (2, steps)) + regime
    # numpy data: slicing it per step costs no array op (the model runs eagerly)
    ys = np.asarray(ys)
    decided = jsvi.infer_discrete(flat_hmm, temperature=0, first_available_dim=-2)
    tr = handlers.trace(decided).get_trace(ys)
    sampled = handlers.trace(handlers.seed(flat_hmm, jax.random.key(0))).get_trace(ys[:, :2])
    for n in ("s_0", "s_1", f"s_{steps - 1}"):  # one value per sequence, as sampled
        assert tr[n].value.shape == sampled["s_1"].value.shape == (2,)
        assert tr[n].value.dtype == sampled["s_1"].value.dtype
    got = np.asarray(path_of(tr, steps))
    for n in range(2):
        np.testing.assert_array_equal(got[n], viterbi(ys[n][:, None]))


@jsvi.config_enumerate
def second_order(ys):
    """history=2: each state depends on the two before it."""
    s1 = s2 = 0
    for t in jsvi.markov(range(ys.shape[0]), history=2):
        logits = jnp.log(TRANS[s1]) + 0.5 * jnp.log(TRANS[s2])
        s = jsvi.sample(f"s_{t}", dist.Categorical(logits=logits))
        jsvi.sample(f"y_{t}", dist.Normal(LOCS[s], 1.0), obs=ys[t])
        s1, s2 = s, s1


SECOND_Y = jnp.array([0.3, 1.9, -1.2, 0.8, 2.2])


def second_order_joint(ys):
    """log p(path, ys) of ``second_order`` for every path: (K**T,), (K**T, T)."""
    steps = ys.shape[0]
    paths = np.array(list(itertools.product(range(K), repeat=steps)))
    trans, locs = np.asarray(TRANS, np.float64), np.asarray(LOCS, np.float64)
    lp = np.zeros(len(paths))
    zero = np.zeros(len(paths), int)
    for t in range(steps):
        prev1 = paths[:, t - 1] if t >= 1 else zero
        prev2 = paths[:, t - 2] if t >= 2 else zero
        logits = np.log(trans[prev1]) + 0.5 * np.log(trans[prev2])
        logits -= np.logaddexp.reduce(logits, axis=1, keepdims=True)
        lp += logits[np.arange(len(paths)), paths[:, t]]
        lp += -0.5 * (float(ys[t]) - locs[paths[:, t]]) ** 2
    return lp, paths


def test_second_order_chain_temperature_zero_is_the_argmax_path():
    decided = jsvi.infer_discrete(second_order, temperature=0)
    got = jax.jit(
        lambda ys: jnp.stack(
            [handlers.trace(decided).get_trace(ys)[n].value for n in names(5)]
        )
    )(SECOND_Y)
    lp, paths = second_order_joint(SECOND_Y)
    np.testing.assert_array_equal(np.asarray(got), paths[np.argmax(lp)])


@pytest.mark.statistical
def test_second_order_chain_temperature_one_matches_the_exact_posterior():
    def one(key):
        tr = handlers.trace(jsvi.infer_discrete(second_order, rng_key=key)).get_trace(
            SECOND_Y
        )
        return jnp.stack([tr[n].value for n in names(5)])

    keys = jax.random.split(jax.random.key(1), 2000)
    draws = np.asarray(jax.jit(jax.vmap(one))(keys))  # (n, T)
    lp, paths = second_order_joint(SECOND_Y)
    post = np.exp(lp - np.logaddexp.reduce(lp))
    for k in range(K):
        marginal = np.array([post[paths[:, t] == k].sum() for t in range(5)])
        assert_frequency(draws == k, marginal)
    # two steps apart, the dependence only a second-order chain has directly
    same = np.array([post[paths[:, t] == paths[:, t + 2]].sum() for t in range(3)])
    assert_frequency(draws[:, 2:] == draws[:, :-2], same)

SHIFT = jnp.array([0.0, 1.5])
P_U = jnp.array([0.2, 0.5, 0.9])
U_OBS = 1.7


def global_chain(tail):
    """A global site ``g`` the chain depends on (decided first, then the chain
    in one pass); with ``tail``, an enumerated site ``u`` after the loop that
    depends on the last state (the chain is then decided site by site)."""

    @jsvi.config_enumerate
    def model(ys):
        g = jsvi.sample("g", dist.Categorical(jnp.array([0.5, 0.5])))
        s = None
        for t in jsvi.markov(range(ys.shape[0])):
            s = jsvi.sample(f"s_{t}", dist.Categorical(INIT if s is None else TRANS[s]))
            jsvi.sample(f"y_{t}", dist.Normal(LOCS[s] + SHIFT[g], 1.0), obs=ys[t])
        if tail:
            u = jsvi.sample("u", dist.Bernoulli(P_U[s]))
            jsvi.sample("v", dist.Normal(2.0 * u, 1.0), obs=U_OBS)

    return model


def global_chain_argmax(ys, tail):
    """The best (g, s_0, s_1, s_2[, u]) by brute force."""
    rows = np.array(
        list(itertools.product(range(2), *[range(K)] * 3, *[range(2)] * tail))
    )
    g, paths = rows[:, 0], rows[:, 1:4]
    init, trans, locs = (np.asarray(a, np.float64) for a in (INIT, TRANS, LOCS))
    shift, p_u = np.asarray(SHIFT, np.float64), np.asarray(P_U, np.float64)
    lp = np.log(init[paths[:, 0]]) + np.sum(np.log(trans[paths[:, :-1], paths[:, 1:]]), 1)
    lp += np.sum(-0.5 * (ys[None] - locs[paths] - shift[g][:, None]) ** 2, 1)
    if tail:
        u, p = rows[:, 4], p_u[paths[:, -1]]
        lp += np.where(u == 1, np.log(p), np.log1p(-p)) - 0.5 * (U_OBS - 2.0 * u) ** 2
    return rows[np.argmax(lp)]


@pytest.mark.parametrize("tail", [False, True])
def test_sites_around_the_chain(tail):
    ys = np.array([1.2, 2.9, 0.4])
    decided = jsvi.infer_discrete(global_chain(tail), temperature=0)
    sites = ["g", "s_0", "s_1", "s_2"] + ["u"] * tail

    def run(ys):
        tr = handlers.trace(decided).get_trace(ys)
        return jnp.stack([tr[n].value.astype(jnp.int32) for n in sites])

    got = np.asarray(jax.jit(run)(ys))
    np.testing.assert_array_equal(got, global_chain_argmax(ys, tail))


def _scan_step(s, y):
    s = jsvi.sample("s", dist.Categorical(TRANS[s]))
    jsvi.sample("y", dist.Normal(LOCS[s], 1.0), obs=y)
    return s, None


@jsvi.config_enumerate
def markov_then_scan(ys):
    """Two steps in a ``markov`` loop, the rest in a ``jsvi.scan`` carrying
    the last state: the chain is decided first (the scan's summed-out factor
    is a potential of its last state), then the scan inside its loop."""
    with jsvi.plate("sequences", ys.shape[0]):
        s = None
        for t in jsvi.markov(range(2)):
            s = jsvi.sample(f"s_{t}", dist.Categorical(INIT if s is None else TRANS[s]))
            jsvi.sample(f"y_{t}", dist.Normal(LOCS[s], 1.0), obs=ys[:, t])
        jsvi.scan(_scan_step, s, ys[:, 2:].T)


def test_a_scan_after_the_chain():
    ys = Y[:, :, 0]  # (sequences, 5)

    def run(ys):
        tr = handlers.trace(jsvi.infer_discrete(markov_then_scan, temperature=0)).get_trace(ys)
        head = jnp.stack([tr["s_0"].value, tr["s_1"].value], 1)
        return jnp.concatenate([head, tr["s"].value.reshape(3, -1).T], 1)

    got = np.asarray(jax.jit(run)(ys))
    for n in range(ys.shape[0]):
        lp, paths = hmm_joint(ys[n][:, None])
        np.testing.assert_array_equal(got[n], paths[np.argmax(lp)])
