"""TraceEnum_ELBO with ``handlers.scale`` and ``handlers.mask`` around enumerated
sites, and a guide-drawn continuous child of a model-enumerated site: each against
a sum over every assignment written out by hand (value and gradient), or against
quadrature where a continuous site is drawn."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints, handlers
from jsvi.errors import ShapeError, SiteError
from jsvi.infer.traceenum_elbo import TraceEnum_ELBO
from jsvi.testing import assert_mc_close

RTOL = 1e-5  # float32: exact sums agree to rounding
X = jnp.array([0.4, 2.3, 1.1])
PARAMS = {"p": jnp.array(0.35), "mu": jnp.array(1.7)}


def empty_guide():
    pass


def _log_normal(x, loc):
    return -0.5 * (x - loc) ** 2 - 0.5 * jnp.log(2 * jnp.pi)


def _value_and_grad(fn, params=PARAMS):
    return jax.jit(jax.value_and_grad(fn))(params)


def _check(model, brute, params=PARAMS):
    """-loss and its gradient equal ``brute`` (the ELBO written out) and its grad."""
    est = TraceEnum_ELBO()
    got, got_grad = _value_and_grad(
        lambda q: -est.loss(jax.random.key(0), q, model, empty_guide), params
    )
    want, want_grad = _value_and_grad(brute, params)
    np.testing.assert_allclose(got, want, rtol=RTOL)
    for name in params:
        np.testing.assert_allclose(
            got_grad[name], want_grad[name], rtol=RTOL, atol=RTOL, err_msg=name
        )


@jsvi.config_enumerate
def scaled_model():
    p = jsvi.param("p", 0.35, constraints.unit_interval)
    mu = jsvi.param("mu", 1.7)
    with handlers.scale(factor=2.5), jsvi.plate("data", 3):
        z = jsvi.sample("z", dist.Bernoulli(p))
        jsvi.sample("x", dist.Normal(mu * z, 1.0), obs=X)


def test_scale_multiplies_the_summed_out_term():
    # s * log sum_z p(z) p(x | z), not log sum_z (p(z) p(x | z)) ** s
    def brute(q):
        per = jnp.logaddexp(
            jnp.log1p(-q["p"]) + _log_normal(X, 0.0),
            jnp.log(q["p"]) + _log_normal(X, q["mu"]),
        )
        return 2.5 * jnp.sum(per)

    _check(scaled_model, brute)


def test_different_scales_in_one_sum_are_an_error():
    @jsvi.config_enumerate
    def model():
        with jsvi.plate("data", 3):
            with handlers.scale(factor=2.0):
                z = jsvi.sample("z", dist.Bernoulli(0.3))
            jsvi.sample("x", dist.Normal(z, 1.0), obs=X)

    with pytest.raises(SiteError, match="'z' and 'x'.*scaled differently"):
        TraceEnum_ELBO().loss(jax.random.key(0), {}, model, empty_guide)


MASK = jnp.array([True, False, True])


@jsvi.config_enumerate
def masked_model():
    p = jsvi.param("p", 0.35, constraints.unit_interval)
    mu = jsvi.param("mu", 1.7)
    with jsvi.plate("data", 3), handlers.mask(mask=MASK):
        z = jsvi.sample("z", dist.Bernoulli(p))
        jsvi.sample("x", dist.Normal(mu * z, 1.0), obs=X)


def test_masked_out_enumerated_site_contributes_nothing():
    # the masked element adds 0, not log 2
    def brute(q):
        per = jnp.logaddexp(
            jnp.log1p(-q["p"]) + _log_normal(X, 0.0),
            jnp.log(q["p"]) + _log_normal(X, q["mu"]),
        )
        return jnp.sum(jnp.where(MASK, per, 0.0))

    _check(masked_model, brute)


def test_fully_masked_global_site_contributes_nothing():
    @jsvi.config_enumerate
    def model():
        with handlers.mask(mask=False):
            jsvi.sample("k", dist.Categorical(jnp.array([0.2, 0.3, 0.5])))

    loss = TraceEnum_ELBO().loss(jax.random.key(0), {}, model, empty_guide)
    assert float(loss) == 0.0


@jsvi.config_enumerate
def value_masked_model():
    p = jsvi.param("p", 0.35, constraints.unit_interval)
    mu = jsvi.param("mu", 1.7)
    with jsvi.plate("data", 3):
        z = jsvi.sample("z", dist.Bernoulli(p))
        with handlers.mask(mask=z == 1):
            jsvi.sample("x", dist.Normal(mu, 1.0), obs=X)


def test_mask_that_depends_on_an_enumerated_value_is_honoured():
    # x counts only where z = 1: log[(1 - p) + p N(x; mu, 1)]
    def brute(q):
        per = jnp.logaddexp(
            jnp.log1p(-q["p"]), jnp.log(q["p"]) + _log_normal(X, q["mu"])
        )
        return jnp.sum(per)

    _check(value_masked_model, brute)


# ---------------------------------------------------------------------------
# a continuous child of a model-enumerated site, drawn by the guide

X_OBS = 1.3
SHIFT = 2.0  # z ~ Normal(SHIFT * k, 0.8)


@jsvi.config_enumerate
def child_model():
    p = jsvi.param("p", 0.35, constraints.unit_interval)
    k = jsvi.sample("k", dist.Bernoulli(p))
    z = jsvi.sample("z", dist.Normal(SHIFT * k, 0.8))
    jsvi.sample("x", dist.Normal(z, 1.0), obs=X_OBS)


def child_guide():
    m = jsvi.param("m", 0.5)
    s = jsvi.param("s", 0.7, constraints.positive)
    jsvi.sample("z", dist.Normal(m, s))


CHILD_PARAMS = {"p": jnp.array(0.35), "m": jnp.array(0.5), "s": jnp.array(0.7)}


def _child_log_joint(z, p):
    """log sum_k p(k) p(z | k) p(x | z)."""

    def log_normal(v, loc, scale):
        return -0.5 * ((v - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)

    return np.logaddexp(
        np.log1p(-p) + log_normal(z, 0.0, 0.8), np.log(p) + log_normal(z, SHIFT, 0.8)
    ) + log_normal(X_OBS, z, 1.0)


def _exact_child_elbo(p, m, s):
    """E_q[log p(x, z) - log q(z)] by 80-point Gauss-Hermite quadrature (float64)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    z = m + s * nodes
    log_q = -0.5 * nodes**2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    return np.sum(weights * (_child_log_joint(z, p) - log_q)) / np.sqrt(2 * np.pi)


def test_guide_drawn_child_broadcasts_and_matches_brute_force():
    key = jax.random.key(3)
    loss = TraceEnum_ELBO().loss(key, CHILD_PARAMS, child_model, child_guide)
    tr = handlers.trace(
        handlers.seed(handlers.substitute(child_guide, data=CHILD_PARAMS), key)
    ).get_trace()
    z = float(tr["z"].value)
    want = _child_log_joint(z, 0.35) - float(tr["z"].fn.log_prob(z))
    np.testing.assert_allclose(-loss, want, rtol=RTOL)


@pytest.mark.statistical
def test_guide_drawn_child_loss_and_gradient_are_unbiased():
    est = TraceEnum_ELBO()
    keys = jax.random.split(jax.random.key(7), 4000)
    draws = jax.jit(
        jax.vmap(
            lambda k: jax.value_and_grad(
                lambda q: -est.loss(k, q, child_model, child_guide)
            )(CHILD_PARAMS)
        )
    )(keys)
    values, grads = draws
    p, m, s = (float(CHILD_PARAMS[n]) for n in ("p", "m", "s"))
    assert_mc_close(values, _exact_child_elbo(p, m, s), z=4.5)
    eps = 1e-5  # central differences of the float64 quadrature
    exact_grad = {}
    for i, name in enumerate(("p", "m", "s")):
        up, down = [p, m, s], [p, m, s]
        up[i] += eps
        down[i] -= eps
        exact_grad[name] = (_exact_child_elbo(*up) - _exact_child_elbo(*down)) / (
            2 * eps
        )
    for name, want in exact_grad.items():
        assert_mc_close(grads[name], want, z=4.5)


def test_guide_value_of_a_wrong_plate_shape_is_still_an_error():
    @jsvi.config_enumerate
    def model():
        k = jsvi.sample("k", dist.Bernoulli(0.3))
        with jsvi.plate("data", 3):
            jsvi.sample("z", dist.Normal(SHIFT * k, 1.0))

    def guide():
        jsvi.sample("z", dist.Normal(jnp.zeros(2), 1.0))

    with pytest.raises(ShapeError, match="'z'.*guide draws values of shape \\(2,\\)"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(jax.random.key(0), {}, model, guide)
