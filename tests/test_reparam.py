"""handlers.reparam with LocScaleReparam and TransformReparam: the log joint over the
original sites is unchanged (change of variables, exactly), the original sites keep
their law (Monte Carlo), and the typed errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.errors import ArgumentError, SiteError
from jsvi.reparam import LocScaleReparam, TransformReparam
from jsvi.testing import assert_mc_close
from jsvi.transforms import AffineTransform, ExpTransform

SCALE = jnp.array([0.5, 1.5, 3.0])


def hier_model(family="normal"):
    def model():
        mu = jsvi.sample("mu", dist.Normal(1.0, 2.0))
        with jsvi.plate("j", 3):
            fn = dist.Normal(mu, SCALE) if family == "normal" else dist.StudentT(4.0, mu, SCALE)
            theta = jsvi.sample("theta", fn)
            jsvi.sample("y", dist.Normal(theta, 1.0), obs=jnp.array([0.3, -1.0, 2.0]))

    return model


def _log_joint_change_of_variables(model, rule, key, c=None):
    """(log p_orig at the original values, log p_reparam - log|dtheta/du|)."""
    rp = handlers.reparam(model, config={"theta": rule})
    params = {} if c is None else {"theta_centered": c}
    tr = handlers.trace(
        handlers.seed(handlers.substitute(rp, data=params), rng_key=key)
    ).get_trace()
    assert tr["theta"].kind == "deterministic" and "theta" not in tr.sample_sites()
    theta = tr["theta"].value
    orig = handlers.trace(
        handlers.condition(model, data={"mu": tr["mu"].value, "theta": theta})
    ).get_trace()
    cc = jnp.broadcast_to(jnp.asarray(0.5 if c is None else c), (3,))
    if rule.centered is not None:
        cc = jnp.broadcast_to(jnp.asarray(rule.centered, jnp.float32), (3,))
    log_det = jnp.sum((1 - cc) * jnp.log(SCALE))
    return orig.log_prob_sum(), tr.log_prob_sum() - log_det


@pytest.mark.parametrize(
    "family,centered",
    [("normal", 0.0), ("normal", 0.3), ("normal", None), ("student-t", 0.0)],
    ids=["noncentred", "partial", "learned", "student-t"],
)
def test_loc_scale_log_joint_is_unchanged(family, centered):
    model = hier_model(family)
    c = jnp.array([0.1, 0.6, 0.9]) if centered is None else None
    rule = LocScaleReparam(centered)
    run = jax.jit(lambda k: _log_joint_change_of_variables(model, rule, k, c))
    for key in range(2):
        a, b = run(jax.random.key(key))
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_transform_log_joint_is_unchanged():
    def model():
        with jsvi.plate("j", 3):
            base = dist.Normal(jnp.array([0.0, 0.5, -0.5]), 0.4)
            jsvi.sample("y", dist.TransformedDistribution(base, [AffineTransform(1.0, 2.0),
                                                                  ExpTransform()]))

    rp = handlers.reparam(model, config={"y": TransformReparam()})
    for key in range(3):
        tr = handlers.trace(handlers.seed(rp, rng_key=key)).get_trace()
        x, y = tr["y_base"].value, tr["y"].value
        np.testing.assert_allclose(y, jnp.exp(1.0 + 2.0 * x), rtol=1e-6)
        log_det = jnp.sum(jnp.log(2.0) + (1.0 + 2.0 * x))  # d/dx exp(1 + 2x)
        orig = handlers.trace(handlers.condition(model, data={"y": y})).get_trace()
        np.testing.assert_allclose(orig.log_prob_sum(), tr.log_prob_sum() - log_det,
                                   rtol=1e-5)


@pytest.mark.statistical
@pytest.mark.parametrize("rule", [LocScaleReparam(0.0), LocScaleReparam(None)],
                         ids=["noncentred", "learned"])
def test_original_site_keeps_its_law(rule):
    """theta | mu ~ Normal(mu, SCALE): draws of theta - mu have mean 0 and
    second moment SCALE^2 (4.5 se over 6 scalars)."""
    model = hier_model()
    rp = handlers.reparam(model, config={"theta": rule})

    def one(key):
        tr = handlers.trace(handlers.seed(rp, rng_key=key)).get_trace()
        d = tr["theta"].value - tr["mu"].value
        return jnp.concatenate([d, d**2])

    draws = jax.vmap(one)(jax.random.split(jax.random.key(0), 4000))
    assert_mc_close(draws, np.concatenate([np.zeros(3), np.asarray(SCALE) ** 2]), z=4.5)


def test_learned_centredness_is_a_model_param_with_a_gradient():
    model = hier_model()
    rp = handlers.reparam(model, config={"theta": LocScaleReparam()})
    guide = jsvi.autoguide.AutoNormal(rp)
    svi = jsvi.SVI(rp, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, jax.random.key(0))
    assert set(state.params) >= {"theta_centered", "theta_decentered_auto_loc"}
    params = jsvi.get_params(svi, state)
    np.testing.assert_allclose(params["theta_centered"], np.full(3, 0.5))
    grad = jax.grad(lambda p: jsvi.Trace_ELBO().loss(jax.random.key(1), p, rp, guide))(params)
    assert np.all(np.abs(np.asarray(grad["theta_centered"])) > 0)


def test_errors_name_the_site():
    def model():
        jsvi.sample("g", dist.Gamma(2.0, 1.0))
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=0.5)

    run = lambda cfg: handlers.seed(handlers.reparam(model, config=cfg), rng_key=0)()  # noqa: E731
    with pytest.raises(SiteError, match="'g'.*location-scale"):
        run({"g": LocScaleReparam()})
    with pytest.raises(SiteError, match="'g'.*TransformedDistribution"):
        run({"g": TransformReparam()})
    with pytest.raises(SiteError, match="'x': observed"):
        run({"x": LocScaleReparam(0)})
    with pytest.raises(ArgumentError, match="centered"):
        LocScaleReparam(1.5)
    with pytest.raises(ArgumentError, match="config"):
        handlers.reparam(model, config=None)


def test_reparam_decorates_with_arguments():
    from jsvi import handlers
    from jsvi.reparam import LocScaleReparam

    @handlers.reparam(config={"theta": LocScaleReparam(0)})
    def model():
        jsvi.sample("theta", dist.Normal(1.0, 2.0))

    tr = handlers.trace(handlers.seed(model, rng_key=0)).get_trace()
    assert "theta_decentered" in tr
