"""TraceEnum_ELBO: exact sums over enumerated sites against brute force, agreement
with Trace_ELBO when nothing is enumerated, the forum experiment (model-side
params, empty vs full guide), and the bad-input errors."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import jsvi
import jsvi.distributions as dist
from jsvi import constraints, handlers
from jsvi.core.enumeration import enum
from jsvi.errors import ArgumentError, ShapeError, SiteError
from jsvi.infer.traceenum_elbo import TraceEnum_ELBO

RTOL = 1e-5  # float32: the exact sums agree to rounding


def empty_guide(*args):
    del args


# ---------------------------------------------------------------------------
# brute force: every joint assignment of every discrete latent, with itertools


def _grid(spec):
    """All joint assignments: dict name -> int array (A, *shape)."""
    names = list(spec)
    cells = []
    for name in names:
        shape, k = spec[name]
        cells.append(list(itertools.product(range(k), repeat=math.prod(shape))))
    rows = list(itertools.product(*cells))
    return {
        name: jnp.asarray(
            np.array([r[i] for r in rows]).reshape((len(rows),) + spec[name][0])
        )
        for i, name in enumerate(names)
    }


def brute_force_elbo(model, guide, params, key, model_spec, guide_spec=None, args=()):
    """One particle's ELBO with every discrete site summed (model) or averaged
    (guide) by brute force; continuous guide sites drawn with ``key`` as
    TraceEnum_ELBO draws them."""
    guide_spec = guide_spec or {}
    model_key = jax.random.fold_in(key, 2**31 - 1)
    ys = _grid(guide_spec) if guide_spec else {}
    num_y = next(iter(ys.values())).shape[0] if ys else 1
    ws = _grid(model_spec)

    def guide_terms(y):
        g = handlers.condition(
            handlers.seed(handlers.substitute(guide, data=params), key), data=y
        )
        tr = handlers.trace(g).get_trace(*args)
        cont = {n: s.value for n, s in tr.latent_sites().items()}
        log_q = tr.log_prob_sum()
        log_q_enum = tr.log_prob_sum(lambda n, s: n in guide_spec)
        return cont, log_q, log_q_enum

    def log_joint(data):
        m = handlers.condition(
            handlers.seed(handlers.substitute(model, data=params), model_key), data=data
        )
        return handlers.trace(m).get_trace(*args).log_prob_sum()

    total = jnp.zeros(())
    for i in range(num_y):
        y = {n: v[i] for n, v in ys.items()}
        cont, log_q, log_q_enum = guide_terms(y)
        lp = jax.vmap(lambda w, c=cont, y=y: log_joint({**c, **y, **w}))(ws)
        total = total + jnp.exp(log_q_enum) * (jax.nn.logsumexp(lp) - log_q)
    return total


def check_against_brute_force(
    model, guide, params, model_spec, guide_spec=None, args=(), key=0, **elbo_kwargs
):
    rng = jax.random.key(key)
    est = TraceEnum_ELBO(**elbo_kwargs)

    @jax.jit
    def enumerated(p):
        return jax.value_and_grad(lambda q: -est.loss(rng, q, model, guide, *args))(p)

    @jax.jit
    def brute(p):
        return jax.value_and_grad(
            lambda q: brute_force_elbo(
                model, guide, q, rng, model_spec, guide_spec, args
            )
        )(p)

    (value, grad), (want, want_grad) = enumerated(params), brute(params)
    np.testing.assert_allclose(value, want, rtol=RTOL)
    for name in params:
        scale = np.max(np.abs(want_grad[name]))
        np.testing.assert_allclose(
            grad[name],
            want_grad[name],
            rtol=RTOL,
            atol=RTOL * max(scale, 1.0),
            err_msg=name,
        )
    return float(value)


# ---------------------------------------------------------------------------
# the small models


X_NESTED = jnp.array([[0.3, -1.2], [1.1, 0.4], [-0.7, 2.0]])  # (inner=3, outer=2)


@jsvi.config_enumerate
def nested_model():
    p = jsvi.param("p", 0.3, constraints.unit_interval)
    locs = jsvi.param("locs", jnp.array([-1.0, 1.0]))
    with jsvi.plate("outer", 2, dim=-1):
        y = jsvi.sample("y", dist.Bernoulli(p))
        with jsvi.plate("inner", 3, dim=-2):
            z = jsvi.sample("z", dist.Bernoulli(jnp.where(y == 1, 0.8, 0.25)))
            jsvi.sample("x", dist.Normal(locs[z] + 0.5 * y, 1.0), obs=X_NESTED)


X_PAIR = jnp.array([0.5, -1.5, 2.5])


@jsvi.config_enumerate
def dependent_pair_model():
    pi = jsvi.param("pi", jnp.array([0.2, 0.5, 0.3]), constraints.simplex)
    trans = jsvi.param(
        "trans", jnp.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]), constraints.simplex
    )
    mu = jsvi.param("mu", jnp.array([-1.0, 0.5, 2.0]))
    with jsvi.plate("data", 3):
        a = jsvi.sample("a", dist.Categorical(pi))
        b = jsvi.sample("b", dist.Categorical(trans[a]))
        jsvi.sample("x", dist.Normal(mu[a] + 0.7 * b, 1.0), obs=X_PAIR)


X_GLOBAL = jnp.array([0.2, 2.4, -0.3, 1.9])


@jsvi.config_enumerate
def global_local_model():
    w = jsvi.param("w", jnp.array([0.5, 0.3, 0.2]), constraints.simplex)
    probs = jsvi.param("probs", jnp.array([0.1, 0.5, 0.9]), constraints.unit_interval)
    shift = jsvi.param("shift", jnp.array([-0.5, 0.0, 0.5]))
    g = jsvi.sample("g", dist.Categorical(w))
    with jsvi.plate("data", 4):
        c = jsvi.sample("c", dist.Bernoulli(probs[g]))
        jsvi.sample("x", dist.Normal(2.0 * c + shift[g], 1.0), obs=X_GLOBAL)


X_MIX = jnp.array([0.4, 2.3, 1.1])


@jsvi.config_enumerate
def continuous_mix_model():
    mu = jsvi.sample("mu", dist.Normal(0.0, 2.0))
    p = jsvi.param("p", 0.4, constraints.unit_interval)
    with jsvi.plate("data", 3):
        c = jsvi.sample("c", dist.Bernoulli(p))
        jsvi.sample("x", dist.Normal(mu + 2.0 * c, 1.0), obs=X_MIX)


def continuous_mix_guide():
    m = jsvi.param("m", 0.3)
    s = jsvi.param("s", 0.8, constraints.positive)
    jsvi.sample("mu", dist.Normal(m, s))


Y_HMM = jnp.array([[0.1, 1.8, 2.2], [-0.4, 0.3, 2.9]])  # (sequence=2, time=3)


@jsvi.config_enumerate
def hmm_model():
    init = jsvi.param("init", jnp.array([0.5, 0.3, 0.2]), constraints.simplex)
    trans = jsvi.param("trans", 0.2 + 0.6 * jnp.eye(3), constraints.simplex)
    locs = jsvi.param("locs", jnp.array([0.0, 1.0, 2.0]))
    with jsvi.plate("sequences", 2):
        state = None
        for t in range(3):
            probs = init if state is None else trans[state]
            state = jsvi.sample(f"s_{t}", dist.Categorical(probs))
            jsvi.sample(f"y_{t}", dist.Normal(locs[state], 0.7), obs=Y_HMM[:, t])


def guide_enum_model():
    prior = jsvi.param("prior", jnp.array([0.6, 0.4]), constraints.simplex)
    y = jsvi.sample("y", dist.Categorical(prior))
    with jsvi.plate("data", 3):
        c = jsvi.sample(
            "c",
            dist.Bernoulli(jnp.where(y == 1, 0.7, 0.2)),
            infer={"enumerate": "parallel"},
        )
        jsvi.sample("x", dist.Normal(2.0 * c - y, 1.0), obs=X_MIX)


@jsvi.config_enumerate
def guide_enum_guide():
    q = jsvi.param("q", jnp.array([0.3, 0.7]), constraints.simplex)
    jsvi.sample("y", dist.Categorical(q))


@jsvi.config_enumerate
def local_model():
    p = jsvi.param("p", 0.35, constraints.unit_interval)
    with jsvi.plate("data", 3):
        c = jsvi.sample("c", dist.Bernoulli(p))
        jsvi.sample("x", dist.Normal(2.0 * c, 1.0), obs=X_MIX)


@jsvi.config_enumerate
def local_guide():
    q = jsvi.param("q", jnp.array([0.2, 0.6, 0.9]), constraints.unit_interval)
    with jsvi.plate("data", 3):
        jsvi.sample("c", dist.Bernoulli(q))


CASES = {
    "nested-plates": (
        nested_model,
        empty_guide,
        {"p": jnp.array(0.3), "locs": jnp.array([-1.0, 1.0])},
        {"y": ((2,), 2), "z": ((3, 2), 2)},
        None,
    ),
    "dependent-pair-in-plate": (
        dependent_pair_model,
        empty_guide,
        {
            "pi": jnp.array([0.2, 0.5, 0.3]),
            "trans": jnp.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]),
            "mu": jnp.array([-1.0, 0.5, 2.0]),
        },
        {"a": ((3,), 3), "b": ((3,), 2)},
        None,
    ),
    "global-with-local-children": (
        global_local_model,
        empty_guide,
        {
            "w": jnp.array([0.5, 0.3, 0.2]),
            "probs": jnp.array([0.1, 0.5, 0.9]),
            "shift": jnp.array([-0.5, 0.0, 0.5]),
        },
        {"g": ((), 3), "c": ((4,), 2)},
        None,
    ),
    "continuous-latent": (
        continuous_mix_model,
        continuous_mix_guide,
        {"p": jnp.array(0.4), "m": jnp.array(0.3), "s": jnp.array(0.8)},
        {"c": ((3,), 2)},
        None,
    ),
    "hmm-chain-in-plate": (
        hmm_model,
        empty_guide,
        {
            "init": jnp.array([0.5, 0.3, 0.2]),
            "trans": 0.2 + 0.6 * jnp.eye(3),
            "locs": jnp.array([0.0, 1.0, 2.0]),
        },
        {"s_0": ((2,), 3), "s_1": ((2,), 3), "s_2": ((2,), 3)},
        None,
    ),
    "guide-enumerated-global": (
        guide_enum_model,
        guide_enum_guide,
        {"prior": jnp.array([0.6, 0.4]), "q": jnp.array([0.3, 0.7])},
        {"c": ((3,), 2)},
        {"y": ((), 2)},
    ),
    "guide-enumerated-local": (
        local_model,
        local_guide,
        {"p": jnp.array(0.35), "q": jnp.array([0.2, 0.6, 0.9])},
        {},
        {"c": ((3,), 2)},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_elbo_and_gradient_equal_brute_force(case):
    model, guide, params, model_spec, guide_spec = CASES[case]
    if not model_spec:  # everything enumerated in the guide: nothing left to sum
        model_spec = {"_none": ((), 1)}
    check_against_brute_force(model, guide, params, model_spec, guide_spec)


def test_empty_guide_gives_the_exact_log_likelihood():
    params = CASES["global-with-local-children"][2]
    loss = TraceEnum_ELBO().loss(
        jax.random.key(0), params, global_local_model, empty_guide
    )
    w, probs, shift = (
        np.asarray(params[k], np.float64) for k in ("w", "probs", "shift")
    )
    x = np.asarray(X_GLOBAL, np.float64)

    def npdf(v, loc):
        return np.exp(-0.5 * (v - loc) ** 2) / np.sqrt(2 * np.pi)

    lik = sum(
        w[g]
        * np.prod((1 - probs[g]) * npdf(x, shift[g]) + probs[g] * npdf(x, 2 + shift[g]))
        for g in range(3)
    )
    np.testing.assert_allclose(-loss, np.log(lik), rtol=RTOL)


def test_subsampled_plate_scales_each_element_after_summing():
    idx = jnp.array([0, 2])

    @jsvi.config_enumerate
    def model():
        p = jsvi.param("p", 0.35, constraints.unit_interval)
        with jsvi.plate("data", 3, subsample=idx) as i:
            c = jsvi.sample("c", dist.Bernoulli(p))
            jsvi.sample("x", dist.Normal(2.0 * c, 1.0), obs=X_MIX[i])

    loss = TraceEnum_ELBO().loss(
        jax.random.key(0), {"p": jnp.array(0.35)}, model, empty_guide
    )
    per = [
        jax.nn.logsumexp(
            jnp.array(
                [
                    jnp.log(0.65) + dist.Normal(0.0, 1.0).log_prob(X_MIX[i]),
                    jnp.log(0.35) + dist.Normal(2.0, 1.0).log_prob(X_MIX[i]),
                ]
            )
        )
        for i in (0, 2)
    ]
    np.testing.assert_allclose(-loss, 1.5 * (per[0] + per[1]), rtol=RTOL)


def test_large_intermediate_takes_the_shifted_einsum_path():
    # Summing s_1 out of p(s_1 | s_0) p(s_2 | s_1) needs a 40**3 intermediate if
    # broadcast, 40x its inputs: that step runs as an einsum of exp(f - max f).
    # The likelihood sits near -4.5e4, where exp() without the shift underflows.
    k = 40
    trans = jax.nn.softmax(jax.random.normal(jax.random.key(3), (k, k)), -1)

    @jsvi.config_enumerate
    def model():
        s0 = jsvi.sample("s_0", dist.Categorical(jnp.ones(k) / k))
        s1 = jsvi.sample("s_1", dist.Categorical(trans[s0]))
        s2 = jsvi.sample("s_2", dist.Categorical(trans[s1]))
        jsvi.sample("y", dist.Normal((s0 + s2).astype(jnp.float32), 1.0), obs=-300.0)

    loss = TraceEnum_ELBO().loss(jax.random.key(0), {}, model, empty_guide)
    t = np.asarray(trans, np.float64)
    joint = t[:, :, None] * t[None, :, :] / k  # (s_0, s_1, s_2)
    states = np.arange(k, dtype=np.float64)
    log_lik = -0.5 * (states[:, None] + states[None, :] + 300.0) ** 2 - 0.5 * np.log(
        2 * np.pi
    )
    top = log_lik.max()
    exact = np.log(np.einsum("abc,ac->", joint, np.exp(log_lik - top))) + top
    np.testing.assert_allclose(-loss, exact, rtol=RTOL)


# ---------------------------------------------------------------------------
# nothing enumerated: Trace_ELBO's estimator, value and gradient


def plain_model(x):
    loc = jsvi.sample("loc", dist.Normal(0.0, 1.0))
    p = jsvi.sample("p", dist.Gamma(2.0, 2.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(loc + p, 1.0), obs=x)


def plain_guide(x):
    del x
    jsvi.sample(
        "loc",
        dist.Normal(jsvi.param("m", 0.1), jsvi.param("s", 0.9, constraints.positive)),
    )
    a = jsvi.param("a", 3.0, constraints.positive)
    jsvi.sample("p", dist.NonReparameterized(dist.Exponential(a)))


def test_nothing_enumerated_equals_trace_elbo():
    x = jnp.array([0.3, 1.2, -0.4])
    params = {"m": jnp.array(0.1), "s": jnp.array(0.9), "a": jnp.array(3.0)}
    key = jax.random.key(5)

    def grads(est):
        return jax.jit(
            jax.value_and_grad(lambda p: est.loss(key, p, plain_model, plain_guide, x))
        )(params)

    (v_enum, g_enum), (v_plain, g_plain) = (
        grads(TraceEnum_ELBO(num_particles=3)),
        grads(jsvi.Trace_ELBO(num_particles=3)),
    )
    np.testing.assert_allclose(v_enum, v_plain, rtol=1e-6)
    for name in params:
        np.testing.assert_allclose(g_enum[name], g_plain[name], rtol=1e-6, err_msg=name)


def test_sequential_and_vectorized_particles_agree():
    params = CASES["continuous-latent"][2]
    a = TraceEnum_ELBO(num_particles=4).loss(
        jax.random.key(2), params, continuous_mix_model, continuous_mix_guide
    )
    b = TraceEnum_ELBO(num_particles=4, vectorize_particles=False).loss(
        jax.random.key(2), params, continuous_mix_model, continuous_mix_guide
    )
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_max_plate_nesting_default_and_explicit_agree():
    params = CASES["nested-plates"][2]
    a = TraceEnum_ELBO().loss(jax.random.key(0), params, nested_model, empty_guide)
    b = TraceEnum_ELBO(max_plate_nesting=3).loss(
        jax.random.key(0), params, nested_model, empty_guide
    )
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_enum_handler_lays_sites_left_of_the_plates():
    tr = handlers.trace(enum(nested_model, max_plate_nesting=2)).get_trace()
    assert tr["y"].value.shape == (2, 1, 1)
    assert tr["z"].value.shape == (2, 1, 1, 1)
    assert tr["x"].fn.log_prob(tr["x"].value).shape == (2, 2, 3, 2)


# ---------------------------------------------------------------------------
# the forum experiment: model-side params with an empty guide and with a guide


def mixture_data(n, key):
    z = jax.random.bernoulli(jax.random.fold_in(key, 0), 0.4, (n,))
    return jnp.where(z, 3.0, 0.0) + jax.random.normal(jax.random.fold_in(key, 1), (n,))


@jsvi.config_enumerate
def mixture_model(data):
    a0 = jsvi.param("a0", -1.0)
    a1 = jsvi.param("a1", 1.0)
    with jsvi.plate("data", data.shape[0]):
        z = jsvi.sample("z", dist.Bernoulli(0.4))
        jsvi.sample("x", dist.Normal(jnp.where(z == 1, a1, a0), 1.0), obs=data)


@jsvi.config_enumerate
def shared_guide(data):
    q = jsvi.param("q", 0.5, constraints.unit_interval)
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("z", dist.Bernoulli(q))


def exact_mle(x):
    """MLE of (a0, a1) from scipy on the exact log-likelihood, with standard errors
    from the observed information."""
    x = np.asarray(x, np.float64)

    def nll(a):
        l0 = np.log(0.6) - 0.5 * (x - a[0]) ** 2
        l1 = np.log(0.4) - 0.5 * (x - a[1]) ** 2
        return -np.sum(np.logaddexp(l0, l1))

    res = scipy.optimize.minimize(
        nll, [-1.0, 1.0], method="BFGS", options={"gtol": 1e-9}
    )
    hess = np.zeros((2, 2))
    eps = 1e-4
    for i in range(2):
        for j in range(2):
            e_i, e_j = np.eye(2)[i] * eps, np.eye(2)[j] * eps
            hess[i, j] = (
                nll(res.x + e_i + e_j)
                - nll(res.x + e_i - e_j)
                - nll(res.x - e_i + e_j)
                + nll(res.x - e_i - e_j)
            ) / (4 * eps**2)
    return res.x, np.sqrt(np.diag(np.linalg.inv(hess)))


@pytest.mark.slow
def test_forum_experiment_empty_guide_is_mle_full_guide_is_not():
    x = mixture_data(300, jax.random.key(11))
    mle, se = exact_mle(x)
    elbo = TraceEnum_ELBO(num_particles=10)
    empty = jsvi.SVI(mixture_model, empty_guide, optax.adam(0.05), elbo)
    state, _ = jsvi.svi_run(empty, jax.random.key(0), 800, x, progress_bar=False)
    got = jsvi.get_params(empty, state)
    # Exact gradients and 800 Adam steps: the optimizer settles within 1% of a
    # standard error of the MLE.
    np.testing.assert_allclose([got["a0"], got["a1"]], mle, atol=0.01 * float(se.min()))

    full = jsvi.SVI(mixture_model, shared_guide, optax.adam(0.05), elbo)
    state, _ = jsvi.svi_run(full, jax.random.key(0), 800, x, progress_bar=False)
    got = jsvi.get_params(full, state)
    # With one q(z) shared by every datum, the ELBO is maximized at a0 = a1 =
    # mean(x) (and q = 1/2): both components collapse onto the data mean.
    mean = float(jnp.mean(x))
    np.testing.assert_allclose(
        [got["a0"], got["a1"]], [mean, mean], atol=0.01 * float(se.min())
    )
    assert abs(mle[1] - mle[0]) > 10 * se.max()  # the MLE keeps them apart


# ---------------------------------------------------------------------------
# bad input: each error names the site


def test_enumerating_a_continuous_site_is_an_error():
    def model():
        jsvi.sample("mu", dist.Normal(0.0, 1.0), infer={"enumerate": "parallel"})

    with pytest.raises(SiteError, match="'mu'.*no finite support"):
        TraceEnum_ELBO().loss(jax.random.key(0), {}, model, empty_guide)


def test_more_plates_than_max_plate_nesting_is_an_error():
    with pytest.raises(ShapeError, match="'z'.*max_plate_nesting=1"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(
            jax.random.key(0), CASES["nested-plates"][2], nested_model, empty_guide
        )


def test_too_large_support_is_an_error_that_gives_the_size():
    @jsvi.config_enumerate
    def model():
        with jsvi.plate("data", 1000):
            jsvi.sample("k", dist.Binomial(10**6, 0.5))

    with pytest.raises(
        ArgumentError, match=r"'k'.*1000001 values.*1000001000 log-density"
    ):
        TraceEnum_ELBO().loss(jax.random.key(0), {}, model, empty_guide)


def test_guide_enumerating_an_observed_site_is_an_error():
    def model():
        jsvi.sample("c", dist.Bernoulli(0.5), obs=1.0)

    @jsvi.config_enumerate
    def guide():
        jsvi.sample("c", dist.Bernoulli(0.5))

    with pytest.raises(SiteError, match="'c'.*enumerated in the guide.*observes"):
        TraceEnum_ELBO().loss(jax.random.key(0), {}, model, guide)


def test_undeclared_batch_dim_next_to_an_enumerated_site_is_an_error():
    @jsvi.config_enumerate
    def model():
        c = jsvi.sample("c", dist.Bernoulli(0.5))
        jsvi.sample("x", dist.Normal(c * jnp.ones(3), 1.0), obs=jnp.zeros(3))

    with pytest.raises(ShapeError, match="'x'.*plate"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(
            jax.random.key(0), {}, model, empty_guide
        )


def test_bad_configuration_is_an_error():
    with pytest.raises(ArgumentError, match="max_plate_nesting"):
        TraceEnum_ELBO(max_plate_nesting=-1)
    assert hash(TraceEnum_ELBO(max_plate_nesting=1)) == hash(
        TraceEnum_ELBO(max_plate_nesting=1)
    )
