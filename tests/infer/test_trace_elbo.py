"""Trace_ELBO: exact identities, unbiased gradients (pathwise and score-function),
and model/guide checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi.errors import ModelGuideMismatchError, ShapeError, SiteError
from jsvi.testing import assert_mc_close

X_OBS = 1.3


def nn_model():
    z = jsvi.sample("z", dist.Normal(0.0, 1.0))
    jsvi.sample("x", dist.Normal(z, 1.0), obs=X_OBS)


def nn_guide(reparam=True):
    def guide():
        q = dist.Normal(jsvi.param("m", 0.0), jsvi.param("s", 1.0, jsvi.constraints.positive))
        jsvi.sample("z", q if reparam else dist.NonReparameterized(q))

    return guide


def nn_elbo_grad(m, s):
    """Closed-form gradient of the Normal-Normal ELBO w.r.t. (m, s)."""
    return np.array([X_OBS - 2 * m, -2 * s + 1 / s])


def per_draw_grads(estimator, guide, params, num, key):
    keys = jax.random.split(jax.random.key(key), num)

    def grad(k):
        g = jax.grad(lambda p: -estimator.loss(k, p, nn_model, guide))(params)
        return jnp.stack([g["m"], g["s"]])

    return np.asarray(jax.jit(jax.vmap(grad))(keys))


def test_elbo_at_exact_posterior_is_log_evidence_for_every_particle():
    post_m, post_s = X_OBS / 2, np.sqrt(0.5)
    log_evidence = dist.Normal(0.0, np.sqrt(2.0)).log_prob(X_OBS)
    params = {"m": jnp.array(post_m), "s": jnp.array(post_s)}
    for vectorize in (True, False):
        loss = jsvi.Trace_ELBO(num_particles=8, vectorize_particles=vectorize).loss(
            jax.random.key(0), params, nn_model, nn_guide()
        )
        np.testing.assert_allclose(-loss, log_evidence, rtol=1e-5)


def test_vectorized_and_sequential_particles_agree():
    params = {"m": jnp.array(0.3), "s": jnp.array(0.8)}
    a = jsvi.Trace_ELBO(num_particles=5).loss(jax.random.key(1), params, nn_model, nn_guide())
    b = jsvi.Trace_ELBO(num_particles=5, vectorize_particles=False).loss(
        jax.random.key(1), params, nn_model, nn_guide()
    )
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.statistical
@pytest.mark.parametrize("reparam", [True, False], ids=["pathwise", "score-function"])
@pytest.mark.parametrize("stl", [False, True], ids=["plain", "stl"])
def test_gradient_is_unbiased_normal_normal(reparam, stl):
    params = {"m": jnp.array(0.2), "s": jnp.array(0.9)}
    est = jsvi.Trace_ELBO(stick_the_landing=stl)
    grads = per_draw_grads(est, nn_guide(reparam), params, 4000, key=7)
    assert_mc_close(grads, nn_elbo_grad(0.2, 0.9), z=4.5)


def test_stick_the_landing_has_zero_variance_at_the_posterior():
    params = {"m": jnp.array(X_OBS / 2), "s": jnp.array(np.sqrt(0.5))}
    stl = per_draw_grads(jsvi.Trace_ELBO(stick_the_landing=True), nn_guide(), params, 64, 3)
    plain = per_draw_grads(jsvi.Trace_ELBO(), nn_guide(), params, 64, 3)
    np.testing.assert_allclose(stl, 0.0, atol=1e-5)
    assert plain.std(0).max() > 0.1


def bern_model():
    z = jsvi.sample("z", dist.Bernoulli(0.3))
    jsvi.sample("x", dist.Normal(2.0 * z, 1.0), obs=1.5)


def bern_guide():
    jsvi.sample("z", dist.Bernoulli(jsvi.param("p", 0.5, jsvi.constraints.unit_interval)))


def bern_exact_elbo(p):
    total = 0.0
    for z in (0.0, 1.0):
        q = p if z else 1 - p
        log_joint = dist.Bernoulli(0.3).log_prob(z) + dist.Normal(2.0 * z, 1.0).log_prob(1.5)
        total = total + q * (log_joint - jnp.log(q))
    return total


@pytest.mark.statistical
def test_discrete_guide_site_gets_score_function_gradient():
    p0 = jnp.array(0.6)
    exact = jax.grad(bern_exact_elbo)(p0)
    keys = jax.random.split(jax.random.key(11), 4000)
    est = jsvi.Trace_ELBO()

    def grad(k):
        return jax.grad(lambda p: -est.loss(k, {"p": p}, bern_model, bern_guide))(p0)

    grads = np.asarray(jax.jit(jax.vmap(grad))(keys))
    assert np.all(grads != 0.0)  # never silently dropped
    assert_mc_close(grads, float(exact), z=4.0)
    np.testing.assert_allclose(
        -jnp.mean(jax.vmap(lambda k: est.loss(k, {"p": p0}, bern_model, bern_guide))(keys)),
        bern_exact_elbo(p0),
        atol=4 * float(np.std(grads)) / np.sqrt(4000) + 0.05,
    )


def test_model_side_param_gets_gradient_with_empty_guide():
    def model(x):
        mu = jsvi.param("mu", 0.0)
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        del x

    x = jnp.array([1.0, 2.0, 4.0])
    g = jax.grad(lambda p: jsvi.Trace_ELBO().loss(jax.random.key(0), p, model, guide, x))(
        {"mu": jnp.array(0.0)}
    )
    np.testing.assert_allclose(g["mu"], -7.0, rtol=1e-6)  # -(sum(x) - n * mu)


def test_guide_missing_a_latent_site():
    def guide():
        pass

    with pytest.raises(ModelGuideMismatchError, match=r"model site 'z'.*missing from the guide"):
        jsvi.Trace_ELBO().loss(jax.random.key(0), {}, nn_model, guide)


def test_guide_site_with_obs():
    def guide():
        jsvi.sample("z", dist.Normal(0.0, 1.0), obs=0.0)

    with pytest.raises(SiteError, match=r"guide site 'z': has obs"):
        jsvi.Trace_ELBO().loss(jax.random.key(0), {}, nn_model, guide)


def test_guide_site_not_in_model():
    def guide():
        jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("extra", dist.Normal(0.0, 1.0))

    with pytest.raises(ModelGuideMismatchError, match=r"guide site 'extra'"):
        jsvi.Trace_ELBO().loss(jax.random.key(0), {}, nn_model, guide)


def test_guide_value_shape_disagrees_with_model():
    def guide():
        jsvi.sample("z", dist.Normal(jnp.zeros(3), 1.0).to_event(1))

    with pytest.raises(ShapeError, match=r"sample site 'z': the guide draws values of shape \(3,\)"):
        jsvi.Trace_ELBO().loss(jax.random.key(0), {}, nn_model, guide)


def test_bad_estimator_configuration():
    with pytest.raises(ValueError, match="num_particles must be an int >= 1"):
        jsvi.Trace_ELBO(num_particles=0)
