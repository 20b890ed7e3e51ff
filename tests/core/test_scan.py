"""``jsvi.scan``: sites appear once with a leading time axis; under
TraceEnum_ELBO enumerated sites are summed out by a forward pass, whose loss and
gradient equal a sum over every path (small T) and a hand-written forward
algorithm (T = 2,000); the compiled program does not grow with T."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _exact import GRAD_RTOL, RTOL, compare_with_exact, empty_guide

import jsvi
import jsvi.distributions as dist
from jsvi import constraints, handlers
from jsvi.errors import ArgumentError, ShapeError, SiteError

K = 3


def _params(key=5):
    k1, k2 = jax.random.split(jax.random.key(key))
    return {
        "init": jax.nn.softmax(jax.random.normal(k1, (K,))),
        "trans": jax.nn.softmax(jax.random.normal(k2, (K, K)), -1),
        "locs": jnp.array([-1.0, 0.5, 2.0]),
    }


def _data(shape, key=1):
    return jax.random.normal(jax.random.key(key), shape) + jnp.arange(shape[1]) % 3


def _hmm_params():
    init = jsvi.param("init", jnp.ones(K) / K, constraints.simplex)
    trans = jsvi.param("trans", jnp.ones((K, K)) / K, constraints.simplex)
    locs = jsvi.param("locs", jnp.zeros(K))
    return init, trans, locs


@jsvi.config_enumerate
def hmm(ys):
    """N sequences (plate around the scan) of length T: ys (N, T). The first
    state is enumerated outside the scan and carried into it."""
    init, trans, locs = _hmm_params()
    with jsvi.plate("sequences", ys.shape[0]):
        z0 = jsvi.sample("z0", dist.Categorical(init))
        jsvi.sample("y0", dist.Normal(locs[z0], 1.0), obs=ys[:, 0])

        def step(z, y):
            z = jsvi.sample("z", dist.Categorical(trans[z]))
            jsvi.sample("y", dist.Normal(locs[z], 1.0), obs=y)
            return z, None

        jsvi.scan(step, z0, ys[:, 1:].T)


@jsvi.config_enumerate
def hmm_in_scan(ys):
    """The whole chain inside the scan: a fixed start state 0, the initial
    distribution reached through ``trans``."""
    _, trans, locs = _hmm_params()

    def step(z, y):
        z = jsvi.sample("z", dist.Categorical(trans[z]))
        jsvi.sample("y", dist.Normal(locs[z], 1.0), obs=y)
        return z, None

    with jsvi.plate("sequences", ys.shape[0]):
        jsvi.scan(step, jnp.zeros(ys.shape[0], jnp.int32), ys.T)


def forward_log_lik(p, ys, start=None):
    """The forward algorithm in plain JAX: sum over sequences of log p(y)."""
    log_obs = jax.scipy.stats.norm.logpdf(ys[..., None], p["locs"], 1.0)  # (N, T, K)
    log_trans = jnp.log(p["trans"])
    first = jnp.log(p["init"]) if start is None else log_trans[start]
    alpha = first + log_obs[:, 0]

    def step(alpha, lo):
        return jax.nn.logsumexp(alpha[:, :, None] + log_trans, 1) + lo, None

    alpha, _ = jax.lax.scan(step, alpha, jnp.swapaxes(log_obs[:, 1:], 0, 1))
    return jnp.sum(jax.nn.logsumexp(alpha, -1))


def path_log_lik(p, ys, start=None):
    """Every path of every sequence, summed by brute force."""
    T = ys.shape[1]
    paths = jnp.asarray(list(itertools.product(range(K), repeat=T)))  # (K**T, T)
    first = jnp.log(p["init"]) if start is None else jnp.log(p["trans"][start])

    def one(path, y):
        lp = first[path[0]] + jnp.sum(jnp.log(p["trans"][path[:-1], path[1:]]))
        return lp + jnp.sum(jax.scipy.stats.norm.logpdf(y, p["locs"][path], 1.0))

    per = jax.vmap(lambda y: jax.nn.logsumexp(jax.vmap(one, (0, None))(paths, y)))(ys)
    return jnp.sum(per)


# -- enumerated chains ----------------------------------------------------------


@pytest.mark.parametrize(
    "model, start", [(hmm, None), (hmm_in_scan, 0)], ids=["carried", "inside"]
)
def test_scan_equals_brute_force_over_paths(model, start):
    ys = _data((2, 4))
    compare_with_exact(model, lambda p: path_log_lik(p, ys, start), _params(), ys)


def test_long_scan_equals_forward_algorithm():
    ys = _data((2, 2000))
    compare_with_exact(hmm, lambda p: forward_log_lik(p, ys), _params(), ys)


@jsvi.config_enumerate
def plate_inside(ys):
    """One chain; each step emits ys.shape[1] observations in a plate inside it."""
    init, trans, locs = _hmm_params()
    z0 = jsvi.sample("z0", dist.Categorical(init))

    def step(z, y):
        z = jsvi.sample("z", dist.Categorical(trans[z]))
        with jsvi.plate("obs", y.shape[0]):
            jsvi.sample("y", dist.Normal(locs[z], 1.0), obs=y)
        return z, None

    with jsvi.plate("obs", ys.shape[1]):
        jsvi.sample("y0", dist.Normal(locs[z0], 1.0), obs=ys[0])
    jsvi.scan(step, z0, ys[1:])


def test_plate_inside_the_step_equals_brute_force():
    ys = _data((4, 3)).T.T  # (T=4, M=3)
    T = ys.shape[0]
    paths = jnp.asarray(list(itertools.product(range(K), repeat=T)))

    def exact(p):
        def one(path):
            lp = jnp.log(p["init"][path[0]])
            lp += jnp.sum(jnp.log(p["trans"][path[:-1], path[1:]]))
            locs = p["locs"][path][:, None]
            return lp + jnp.sum(jax.scipy.stats.norm.logpdf(ys, locs, 1.0))

        return jax.nn.logsumexp(jax.vmap(one)(paths))

    compare_with_exact(plate_inside, exact, _params(), ys)


@jsvi.config_enumerate
def ragged(ys, lengths):
    """Sequences of different lengths: steps past a sequence's end are masked."""
    _, trans, locs = _hmm_params()

    def step(z, inputs):
        y, t = inputs
        with handlers.mask(mask=t < lengths):
            z = jsvi.sample("z", dist.Categorical(trans[z]))
            jsvi.sample("y", dist.Normal(locs[z], 1.0), obs=y)
        return z, None

    with jsvi.plate("sequences", ys.shape[0]):
        start = jnp.zeros(ys.shape[0], jnp.int32)
        jsvi.scan(step, start, (ys.T, jnp.arange(ys.shape[1])))


def test_masked_steps_count_as_absent():
    ys, lengths = _data((2, 5)), jnp.array([5, 3])

    def exact(p):
        return forward_log_lik(p, ys[:1], 0) + forward_log_lik(p, ys[1:, :3], 0)

    compare_with_exact(ragged, exact, _params(), ys, lengths)


def _jaxpr_size(T):
    ys = jnp.zeros((2, T))
    est = jsvi.TraceEnum_ELBO()
    fn = jax.value_and_grad(
        lambda p: est.loss(jax.random.key(0), p, hmm, empty_guide, ys)
    )
    return len(jax.make_jaxpr(fn)(_params()).jaxpr.eqns)


def test_compiled_program_does_not_grow_with_length():
    assert _jaxpr_size(10) == _jaxpr_size(1000)


def test_enumeration_without_traceenum_elbo_is_an_error():
    svi = jsvi.SVI(hmm_in_scan, empty_guide, optax.adam(0.1), jsvi.Trace_ELBO())
    with pytest.raises(SiteError, match="TraceEnum_ELBO"):
        jsvi.svi_init(svi, jax.random.key(0), jnp.zeros((2, 5)))


# -- without enumeration -------------------------------------------------------------


def walk(ys):
    """A Gaussian random walk observed with noise."""
    scale = jsvi.param("scale", 1.0, constraints.positive)

    def step(x_prev, y):
        x = jsvi.sample("x", dist.Normal(x_prev, scale))
        jsvi.sample("y", dist.Normal(x, 0.5), obs=y)
        return x, x

    return jsvi.scan(step, 0.0, ys)


def walk_guide(ys):
    loc = jsvi.param("loc", jnp.zeros(ys.shape[0]))

    def step(carry, loc_t):
        jsvi.sample("x", dist.Normal(loc_t, 0.3))
        return carry, None

    jsvi.scan(step, 0, loc)


def _walk_elbo(p, x, ys):
    prev = jnp.concatenate([jnp.zeros(1), x[:-1]])
    log_p = dist.Normal(prev, p["scale"]).log_prob(x) + dist.Normal(x, 0.5).log_prob(ys)
    return jnp.sum(log_p) - jnp.sum(dist.Normal(p["loc"], 0.3).log_prob(x))


def test_sites_get_a_leading_time_axis():
    ys = jnp.linspace(-1.0, 1.0, 30)
    tr = handlers.trace(handlers.seed(walk, rng_key=0)).get_trace(ys)
    assert tr["x"].value.shape == (30,) and tr["y"].fn.batch_shape == (30,)
    assert tr["scale"].kind == "param" and np.shape(tr["scale"].value) == ()
    carry, xs = handlers.seed(walk, rng_key=0)(ys)
    np.testing.assert_array_equal(xs, tr["x"].value)
    assert carry == xs[-1]
    assert len(set(np.asarray(tr["x"].value).tolist())) == 30  # distinct draws


def test_trace_elbo_with_a_guide_drawing_every_step():
    ys = jnp.linspace(-1.0, 1.0, 30)
    params = {"scale": jnp.array(0.7), "loc": jnp.sin(jnp.arange(30.0))}
    key = jax.random.key(3)
    est = jsvi.Trace_ELBO()
    gtr = handlers.trace(
        handlers.seed(handlers.substitute(walk_guide, data=params), rng_key=key)
    ).get_trace(ys)
    eps = gtr["x"].value - params["loc"]  # the guide's standard-normal draws * 0.3

    def want(p):
        return -_walk_elbo(p, p["loc"] + eps, ys)

    got, got_grad = jax.jit(
        jax.value_and_grad(lambda p: est.loss(key, p, walk, walk_guide, ys))
    )(params)
    value, grad = jax.value_and_grad(want)(params)
    np.testing.assert_allclose(got, value, rtol=RTOL)
    for name in params:
        np.testing.assert_allclose(got_grad[name], grad[name], rtol=GRAD_RTOL, atol=1e-5)


def test_svi_runs_with_scan_in_model_and_guide():
    ys = jnp.linspace(-1.0, 1.0, 20)
    svi = jsvi.SVI(walk, walk_guide, optax.adam(0.05), jsvi.Trace_ELBO())
    state, losses = jsvi.svi_run(svi, jax.random.key(0), 5, ys, progress_bar=False)
    assert losses.shape == (5,) and bool(jnp.all(jnp.isfinite(losses)))
    assert jsvi.get_params(svi, state)["loc"].shape == (20,)


def test_a_value_without_the_time_axis_is_an_error():
    ys = jnp.zeros(10)
    with pytest.raises(ShapeError, match="leading time"):
        handlers.seed(handlers.substitute(walk, data={"x": jnp.zeros(3)}), 0)(ys)


def test_without_handlers_scan_is_lax_scan():
    carry, ys = jsvi.scan(lambda c, x: (c + x, 2 * x), 0.0, jnp.arange(4.0))
    assert float(carry) == 6.0 and ys.tolist() == [0.0, 2.0, 4.0, 6.0]


def test_bad_arguments_are_errors():
    with pytest.raises(ArgumentError, match="history"):
        jsvi.scan(lambda c, x: (c, x), 0.0, jnp.zeros(3), history=-1)
    with pytest.raises(ShapeError, match="disagree"):
        jsvi.scan(lambda c, x: (c, x), 0.0, jnp.zeros(3), length=4)


@jsvi.config_enumerate
def switching(ys):
    """An enumerated regime chain whose per-step continuous state the guide draws."""
    _, trans, locs = _hmm_params()

    def step(z, y):
        z = jsvi.sample("z", dist.Categorical(trans[z]))
        x = jsvi.sample("x", dist.Normal(locs[z], 1.0))
        jsvi.sample("y", dist.Normal(x, 0.5), obs=y)
        return z, None

    jsvi.scan(step, 0, ys)


def switching_guide(ys):
    loc = jsvi.param("loc", jnp.zeros(ys.shape[0]))

    def step(carry, loc_t):
        jsvi.sample("x", dist.Normal(loc_t, 0.5))
        return carry, None

    jsvi.scan(step, 0, loc)


def test_enumerated_chain_with_guide_drawn_states_equals_brute_force():
    ys = jnp.array([0.1, 1.8, 2.2, -0.5])
    params = {**_params(), "loc": jnp.array([0.0, 1.0, 2.0, -0.3])}
    key = jax.random.key(3)
    x = handlers.trace(
        handlers.seed(handlers.substitute(switching_guide, data=params), key)
    ).get_trace(ys)["x"].value
    paths = jnp.asarray(list(itertools.product(range(K), repeat=4)))
    prev = jnp.concatenate([jnp.zeros((paths.shape[0], 1), int), paths[:, :-1]], 1)
    log_chain = jnp.sum(jnp.log(params["trans"][prev, paths]), 1) + jnp.sum(
        dist.Normal(params["locs"][paths], 1.0).log_prob(x), 1
    )
    want = (
        jax.nn.logsumexp(log_chain)
        + jnp.sum(dist.Normal(x, 0.5).log_prob(ys))
        - jnp.sum(dist.Normal(params["loc"], 0.5).log_prob(x))
    )
    got = jsvi.TraceEnum_ELBO().loss(key, params, switching, switching_guide, ys)
    np.testing.assert_allclose(got, -want, rtol=RTOL)
