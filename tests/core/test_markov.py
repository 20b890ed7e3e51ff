"""``jsvi.markov``: enumeration dims are recycled along a chain, and
TraceEnum_ELBO's loss and gradient equal a sum over every path (small T) and a
hand-written forward algorithm (longer T), with plates around and inside the
chain and ``history`` 1 and 2."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _exact import compare_with_exact, empty_guide

import jsvi
import jsvi.distributions as dist
from jsvi import constraints, handlers
from jsvi.core.enumeration import ENUM_DIM_KEY, enum
from jsvi.errors import ArgumentError, SiteError

K = 3


def _params(key=5):
    k1, k2 = jax.random.split(jax.random.key(key))
    return {
        "init": jax.nn.softmax(jax.random.normal(k1, (K,))),
        "trans": jax.nn.softmax(jax.random.normal(k2, (K, K)), -1),
        "locs": jnp.array([-1.0, 0.5, 2.0]),
    }


def _data(shape, key=1):
    return jax.random.normal(jax.random.key(key), shape) + jnp.arange(shape[-1]) % 3


@jsvi.config_enumerate
def hmm(ys, history=1):
    """N sequences (plate around the chain) of length T: ys (N, T)."""
    init = jsvi.param("init", jnp.ones(K) / K, constraints.simplex)
    trans = jsvi.param("trans", jnp.ones((K, K)) / K, constraints.simplex)
    locs = jsvi.param("locs", jnp.zeros(K))
    with jsvi.plate("sequences", ys.shape[0]):
        s = None
        for t in jsvi.markov(range(ys.shape[1]), history=history):
            s = jsvi.sample(f"s_{t}", dist.Categorical(init if s is None else trans[s]))
            jsvi.sample(f"y_{t}", dist.Normal(locs[s], 1.0), obs=ys[:, t])


def forward_log_lik(p, ys):
    """The forward algorithm, written out: sum over sequences of log p(y)."""
    log_obs = jax.scipy.stats.norm.logpdf(ys[..., None], p["locs"], 1.0)  # (N, T, K)
    alpha = jnp.log(p["init"]) + log_obs[:, 0]
    for t in range(1, ys.shape[1]):
        alpha = (
            jax.nn.logsumexp(alpha[:, :, None] + jnp.log(p["trans"]), 1) + log_obs[:, t]
        )
    return jnp.sum(jax.nn.logsumexp(alpha, -1))


def path_log_lik(p, ys):
    """Every path of every sequence, summed by brute force: sum_n log sum_path."""
    T = ys.shape[1]
    paths = jnp.asarray(list(itertools.product(range(K), repeat=T)))  # (K**T, T)

    def one(path, y):
        lp = jnp.log(p["init"][path[0]]) + jnp.sum(
            jnp.log(p["trans"][path[:-1], path[1:]])
        )
        return lp + jnp.sum(jax.scipy.stats.norm.logpdf(y, p["locs"][path], 1.0))

    per = jax.vmap(lambda y: jax.nn.logsumexp(jax.vmap(one, (0, None))(paths, y)))(ys)
    return jnp.sum(per)


def test_dims_are_recycled_along_a_long_chain():
    ys = jnp.zeros((2, 120))
    for history in (1, 2):
        run = enum(
            handlers.seed(handlers.substitute(hmm, data=_params()), 0),
            max_plate_nesting=1,
        )
        tr = handlers.trace(run).get_trace(ys, history)
        used = {s.infer[ENUM_DIM_KEY] for s in tr.latent_sites().values()}
        assert used == set(range(-2, -3 - history, -1))


def test_chain_equals_brute_force_over_paths():
    ys = _data((2, 4))
    compare_with_exact(hmm, lambda p: path_log_lik(p, ys), _params(), ys)


def test_long_chain_equals_forward_algorithm():
    ys = _data((3, 25))
    compare_with_exact(hmm, lambda p: forward_log_lik(p, ys), _params(), ys)


def test_markov_without_handlers_is_a_plain_loop():
    assert list(jsvi.markov(range(4))) == [0, 1, 2, 3]


@jsvi.config_enumerate
def second_order(ys):
    """A single chain where s_t depends on s_{t-1} and s_{t-2}; y (T,)."""
    w = jsvi.param("w", jnp.ones((2, 2, 2)) / 2, constraints.simplex)
    locs = jsvi.param("locs", jnp.zeros(2))
    prev, prev2 = 0, 0
    for t in jsvi.markov(range(ys.shape[0]), history=2):
        s = jsvi.sample(f"s_{t}", dist.Categorical(w[prev2, prev]))
        jsvi.sample(f"y_{t}", dist.Normal(locs[s], 1.0), obs=ys[t])
        prev2, prev = prev, s


def test_history_two_equals_brute_force():
    ys = _data((6,))
    params = {
        "w": jax.nn.softmax(jax.random.normal(jax.random.key(2), (2, 2, 2)), -1),
        "locs": jnp.array([-0.5, 1.5]),
    }
    paths = jnp.asarray(list(itertools.product(range(2), repeat=6)))

    def exact(p):
        def one(path):
            prev = jnp.concatenate([jnp.zeros(2, path.dtype), path])
            lp = jnp.sum(jnp.log(p["w"][prev[:-2], prev[1:-1], path]))
            return lp + jnp.sum(jax.scipy.stats.norm.logpdf(ys, p["locs"][path], 1.0))

        return jax.nn.logsumexp(jax.vmap(one)(paths))

    compare_with_exact(second_order, exact, params, ys)


@jsvi.config_enumerate
def plate_inside(ys):
    """One chain; at each step a plate of 3 observations: ys (T, 3)."""
    init = jsvi.param("init", jnp.ones(K) / K, constraints.simplex)
    trans = jsvi.param("trans", jnp.ones((K, K)) / K, constraints.simplex)
    locs = jsvi.param("locs", jnp.zeros(K))
    s = None
    for t in jsvi.markov(range(ys.shape[0])):
        s = jsvi.sample(f"s_{t}", dist.Categorical(init if s is None else trans[s]))
        with jsvi.plate(f"obs_{t}", ys.shape[1]):
            jsvi.sample(f"y_{t}", dist.Normal(locs[s], 1.0), obs=ys[t])


def test_plate_inside_the_chain_equals_brute_force():
    ys = _data((3, 4)).T  # (T=4, 3)
    paths = jnp.asarray(list(itertools.product(range(K), repeat=ys.shape[0])))

    def exact(p):
        def one(path):
            lp = jnp.log(p["init"][path[0]])
            lp = lp + jnp.sum(jnp.log(p["trans"][path[:-1], path[1:]]))
            locs = p["locs"][path][:, None]
            return lp + jnp.sum(jax.scipy.stats.norm.logpdf(ys, locs, 1.0))

        return jax.nn.logsumexp(jax.vmap(one)(paths))

    compare_with_exact(plate_inside, exact, _params(), ys)


def test_bad_history_is_an_error():
    with pytest.raises(ArgumentError, match="markov: history"):
        list(jsvi.markov(range(3), history=-1))


def _sample_hmm(key, n, length, p):
    """Sequences (n, length) drawn from the HMM with parameters ``p``."""
    keys = jax.random.split(key, length + 1)
    s = jax.random.categorical(keys[0], jnp.log(p["init"]), shape=(n,))
    ys = []
    for t in range(length):
        if t:
            s = jax.random.categorical(keys[t], jnp.log(p["trans"][s]))
        ys.append(
            p["locs"][s] + jax.random.normal(jax.random.fold_in(keys[t], 1), (n,))
        )
    return jnp.stack(ys, 1)


def _scipy_mle(ys, start):
    """Maximum likelihood by scipy (BFGS, float64) on the forward algorithm."""
    import scipy.optimize

    y = np.asarray(ys, np.float64)

    def unpack(v):
        init = np.exp(v[:K] - np.logaddexp.reduce(v[:K]))
        logits = v[K : K + K * K].reshape(K, K)
        trans = np.exp(logits - np.logaddexp.reduce(logits, 1, keepdims=True))
        return init, trans, v[K + K * K :]

    def nll(v):
        init, trans, locs = unpack(v)
        log_obs = -0.5 * (y[..., None] - locs) ** 2 - 0.5 * np.log(2 * np.pi)
        alpha = np.log(init) + log_obs[:, 0]
        for t in range(1, y.shape[1]):
            alpha = np.logaddexp.reduce(alpha[:, :, None] + np.log(trans), 1)
            alpha = alpha + log_obs[:, t]
        return -np.sum(np.logaddexp.reduce(alpha, -1))

    v0 = np.concatenate(
        [np.log(start["init"]), np.log(start["trans"]).ravel(), start["locs"]]
    )
    res = scipy.optimize.minimize(nll, v0, method="BFGS", options={"gtol": 1e-7})
    return res.fun, unpack(res.x)


@pytest.mark.slow
def test_svi_with_an_empty_guide_reaches_the_maximum_likelihood():
    import optax

    truth = {
        "init": jnp.array([0.5, 0.3, 0.2]),
        "trans": jnp.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]),
        "locs": jnp.array([-2.0, 0.0, 2.5]),
    }
    ys = _sample_hmm(jax.random.key(4), 30, 8, truth)
    start = {
        "init": np.ones(K) / K,
        "trans": np.full((K, K), 0.1) + 0.7 * np.eye(K),
        "locs": np.array([-1.0, 0.0, 1.0]),
    }

    @jsvi.config_enumerate
    def model(ys):
        init = jsvi.param("init", jnp.asarray(start["init"]), constraints.simplex)
        trans = jsvi.param("trans", jnp.asarray(start["trans"]), constraints.simplex)
        locs = jsvi.param("locs", jnp.asarray(start["locs"]))
        with jsvi.plate("sequences", ys.shape[0]):
            s = None
            for t in jsvi.markov(range(ys.shape[1])):
                probs = init if s is None else trans[s]
                s = jsvi.sample(f"s_{t}", dist.Categorical(probs))
                jsvi.sample(f"y_{t}", dist.Normal(locs[s], 1.0), obs=ys[:, t])

    svi = jsvi.SVI(model, empty_guide, optax.adam(0.1), jsvi.TraceEnum_ELBO())
    state, _ = jsvi.svi_run(svi, jax.random.key(0), 500, ys, progress_bar=False)
    best_nll, (init, trans, locs) = _scipy_mle(ys, start)
    final = float(jsvi.evaluate_loss(svi, state, ys))
    # The loss is the exact negative log-likelihood. Within 0.01 nats of scipy's
    # optimum (a 1-sd move of one parameter costs 0.5 nats), and the parameters
    # agree to the precision such a gap allows.
    assert final - best_nll < 0.01, (final, best_nll)
    got = jsvi.get_params(svi, state)
    np.testing.assert_allclose(got["locs"], locs, atol=0.05)
    np.testing.assert_allclose(got["trans"], trans, atol=0.05)


def test_guide_side_enumeration_inside_markov_is_an_error():
    def model():
        s = 0
        for t in range(3):
            s = jsvi.sample(f"s_{t}", dist.Categorical(jnp.ones((2, 2))[s] / 2))

    @jsvi.config_enumerate
    def guide():
        for t in jsvi.markov(range(3)):
            jsvi.sample(f"s_{t}", dist.Categorical(jnp.ones(2) / 2))

    with pytest.raises(SiteError, match="same dim.*markov"):
        jsvi.TraceEnum_ELBO().loss(jax.random.key(0), {}, model, guide)
