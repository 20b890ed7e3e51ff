"""``jsvi.scan(..., history=k)`` with enumerated sites under TraceEnum_ELBO:
the forward message is a table over the last ``k`` steps' states, and the loss
and gradient equal a sum over every path and the same chain written with
``jsvi.markov(..., history=k)``; ``infer_discrete`` decides such a chain
(Viterbi, and draws from the exact posterior); a carry that reaches back
further is a typed error."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _exact import RTOL, assert_value_and_grad_close, empty_guide, enum_value_and_grad

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.errors import SiteError


def _params(K, order, key=3):
    k1, k2 = jax.random.split(jax.random.key(key))
    return {
        "trans": jax.nn.softmax(jax.random.normal(k1, (K,) * (order + 1)), -1),
        "locs": jax.random.normal(k2, (K,)) * 2.0,
    }


def _data(N, T, key=1):
    return jax.random.normal(jax.random.key(key), (N, T)) + jnp.arange(T) % 3


def _site_params(K, order):
    trans = jsvi.param("trans", jnp.ones((K,) * (order + 1)) / K, constraints.simplex)
    locs = jsvi.param("locs", jnp.zeros(K))
    return trans, locs


def scan_chain(K, order):
    """N sequences (plate around the scan), ys (N, T): z_t depends on the
    ``order`` states before it (state 0 before the start)."""

    @jsvi.config_enumerate
    def model(ys):
        trans, locs = _site_params(K, order)

        def step(prev, y):
            z = jsvi.sample("z", dist.Categorical(trans[prev]))
            jsvi.sample("y", dist.Normal(locs[z], 1.0), obs=y)
            return prev[1:] + (z,), None

        with jsvi.plate("sequences", ys.shape[0]):
            start = tuple(jnp.zeros(ys.shape[0], jnp.int32) for _ in range(order))
            jsvi.scan(step, start, ys.T, history=order)

    return model


def markov_chain(K, order):
    """The same chain as ``scan_chain`` as a Python loop under ``jsvi.markov``."""

    @jsvi.config_enumerate
    def model(ys):
        trans, locs = _site_params(K, order)
        with jsvi.plate("sequences", ys.shape[0]):
            prev = (0,) * order
            for t in jsvi.markov(range(ys.shape[1]), history=order):
                z = jsvi.sample(f"z_{t}", dist.Categorical(trans[prev]))
                jsvi.sample(f"y_{t}", dist.Normal(locs[z], 1.0), obs=ys[:, t])
                prev = prev[1:] + (z,)

    return model


def path_log_lik(p, ys, K, order):
    """Every path of every sequence, summed by brute force."""
    T = ys.shape[1]
    paths = jnp.asarray(list(itertools.product(range(K), repeat=T)))
    log_trans = jnp.log(p["trans"])

    def one(path, y):
        full = jnp.concatenate([jnp.zeros(order, path.dtype), path])
        index = tuple(full[i : i + T] for i in range(order + 1))
        lp = jnp.sum(log_trans[index])
        return lp + jnp.sum(jax.scipy.stats.norm.logpdf(y, p["locs"][path], 1.0))

    per = jax.vmap(lambda y: jax.nn.logsumexp(jax.vmap(one, (0, None))(paths, y)))(ys)
    return jnp.sum(per)


@pytest.mark.parametrize(
    "K, order, N, T",
    [(3, 2, 2, 5), (2, 2, 1, 2), (2, 3, 2, 5)],
    ids=["second-order", "shorter-than-history", "third-order"],
)
def test_scan_history_equals_brute_force(K, order, N, T):
    ys, params = _data(N, T), _params(K, order)
    got = enum_value_and_grad(scan_chain(K, order), params, ys)
    want = jax.value_and_grad(lambda q: path_log_lik(q, ys, K, order))(params)
    assert_value_and_grad_close(got, want)


def test_scan_history_two_equals_markov_history_two():
    K, order, ys = 3, 2, _data(2, 7, key=4)
    params = _params(K, order, key=7)
    got = enum_value_and_grad(scan_chain(K, order), params, ys)
    want = enum_value_and_grad(markov_chain(K, order), params, ys)
    assert_value_and_grad_close(got, want)


def _reaching(history, carried):
    """A chain whose carry holds the last ``carried`` states."""

    @jsvi.config_enumerate
    def model(ys):
        trans, locs = _site_params(2, 1)

        def step(prev, y):
            z = jsvi.sample("z", dist.Categorical(trans[prev[-1]]))
            jsvi.sample("y", dist.Normal(locs[z], 1.0), obs=y)
            return prev[1:] + (z,), None

        jsvi.scan(step, (0,) * carried, ys, history=history)

    return model


@pytest.mark.parametrize("history", [1, 2])
def test_a_carry_reaching_past_history_is_an_error(history):
    model = _reaching(history, history + 1)
    with pytest.raises(SiteError, match=f"reaches back {history + 1} steps, but history={history}"):
        jsvi.TraceEnum_ELBO().loss(
            jax.random.key(0), _params(2, 1), model, empty_guide, jnp.zeros(6)
        )


def path_log_joint(p, y, K, order):
    """log p(path, y) of every path of one sequence in float64: (K**T,), paths."""
    T = y.shape[0]
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    full = np.concatenate([np.zeros((paths.shape[0], order), int), paths], 1)
    log_trans = np.log(np.asarray(p["trans"], np.float64))
    index = tuple(full[:, i : i + T] for i in range(order + 1))
    locs = np.asarray(p["locs"], np.float64)
    lp = np.sum(log_trans[index], 1)
    lp += np.sum(-0.5 * (np.asarray(y, np.float64) - locs[paths]) ** 2, 1)
    return lp, paths


def _decided(K, order, ys, temperature, key=None):
    model = jsvi.handlers.substitute(scan_chain(K, order), data=_params(K, order))
    decided = jsvi.infer_discrete(model, temperature=temperature, rng_key=key)
    tr = jsvi.handlers.trace(decided).get_trace(ys)
    return tr["z"].value.reshape(ys.shape[1], ys.shape[0]).T  # (N, T)


@pytest.mark.parametrize(
    "K, order, T", [(2, 2, 5), (2, 3, 6), (3, 2, 2)],
    ids=["second-order", "third-order", "shorter-than-history"],
)
def test_viterbi_on_a_scan_with_history_is_the_best_path(K, order, T):
    ys = _data(2, T)
    got = np.asarray(jax.jit(lambda ys: _decided(K, order, ys, 0))(ys))
    for n in range(ys.shape[0]):
        lp, paths = path_log_joint(_params(K, order), ys[n], K, order)
        np.testing.assert_array_equal(got[n], paths[np.argmax(lp)])


Z = 4.5  # about 10 scalars per sequence


def assert_frequency(hits, p):
    """Frequencies of events against exact probabilities ``p``, within ``Z``
    binomial standard errors from the exact ``p`` plus one draw's worth."""
    hits = np.asarray(hits, float)
    n = hits.shape[0]
    se = np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / n)
    err = np.abs(hits.mean(0) - p)
    assert np.all(err <= Z * se + 1.0 / n), (hits.mean(0), p, se)


@pytest.mark.statistical
def test_posterior_draws_on_a_scan_with_history_two_match_the_exact_posterior():
    K, order, ys = 2, 2, _data(2, 5, key=6)
    keys = jax.random.split(jax.random.key(0), 2000)
    run = jax.jit(jax.vmap(lambda key: _decided(K, order, ys, 1, key)))
    draws = np.asarray(run(keys))  # (draws, N, T)
    for n in range(ys.shape[0]):
        lp, paths = path_log_joint(_params(K, order), ys[n], K, order)
        post = np.exp(lp - np.logaddexp.reduce(lp))
        marginal = np.array([post[paths[:, t] == 1].sum() for t in range(5)])
        assert_frequency(draws[:, n] == 1, marginal)
        # joint statistics two steps apart (where a second-order chain acts)
        for t in (0, 2):
            same = draws[:, n, t] == draws[:, n, t + 2]
            assert_frequency(same, post[paths[:, t] == paths[:, t + 2]].sum())


def test_two_enumerated_sites_a_step_and_a_plate_inside_it():
    """a_t depends on a_{t-2}, b_t on a_t and b_{t-1}; each step observes a
    plate of three values: the blocks hold two dims each."""
    K, T = 2, 4
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    A = jax.nn.softmax(jax.random.normal(k1, (K, K)), -1)
    B = jax.nn.softmax(jax.random.normal(k2, (K, K, K)), -1)
    loc = jax.random.normal(k3, (K, K)) * 2.0
    ys = jax.random.normal(jax.random.key(1), (T, 3))

    @jsvi.config_enumerate
    def model(ys):
        def step(c, y):
            a2, a1, b1 = c
            a = jsvi.sample("a", dist.Categorical(A[a2]))
            b = jsvi.sample("b", dist.Categorical(B[a, b1]))
            with jsvi.plate("obs", 3):
                jsvi.sample("y", dist.Normal(loc[a, b], 1.0), obs=y)
            return (a1, a, b), None

        jsvi.scan(step, (0, 0, 0), ys, history=2)

    paths = np.array(list(itertools.product(range(K), repeat=2 * T)))
    a = np.concatenate([np.zeros((len(paths), 2), int), paths[:, :T]], 1)
    b = np.concatenate([np.zeros((len(paths), 1), int), paths[:, T:]], 1)
    A64, B64, loc64 = (np.asarray(x, np.float64) for x in (A, B, loc))
    lp = np.sum(np.log(A64[a[:, :T], a[:, 2:]]), 1)
    lp += np.sum(np.log(B64[a[:, 2:], b[:, :T], b[:, 1:]]), 1)
    means = loc64[a[:, 2:], b[:, 1:]][..., None]  # (paths, T, 1)
    lp += np.sum(-0.5 * (np.asarray(ys, np.float64) - means) ** 2, (1, 2))
    lp -= 0.5 * np.log(2 * np.pi) * ys.size
    want = np.logaddexp.reduce(lp)
    est = jsvi.TraceEnum_ELBO()
    got = -jax.jit(lambda ys: est.loss(jax.random.key(0), {}, model, empty_guide, ys))(ys)
    np.testing.assert_allclose(got, want, rtol=RTOL)


def test_log_likelihood_of_a_history_two_scan_is_each_sequences_likelihood():
    K, order, ys = 3, 2, _data(3, 4, key=8)
    params = _params(K, order)
    draws = {k: jnp.stack([v, v]) for k, v in params.items()}  # two equal draws
    ll = jsvi.log_likelihood(scan_chain(K, order), draws, ys)
    assert set(ll) == {"y"} and ll["y"].shape == (2, 3)
    for n in range(ys.shape[0]):
        lp, _ = path_log_joint(params, ys[n], K, order)
        want = np.logaddexp.reduce(lp) - 0.5 * np.log(2 * np.pi) * ys.shape[1]
        np.testing.assert_allclose(ll["y"][:, n], [want, want], rtol=RTOL)
