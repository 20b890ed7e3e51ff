"""Sequential enumeration: a site marked ``"sequential"`` is summed out one value
at a time, and TraceEnum_ELBO's loss and gradient equal parallel enumeration and
a sum over every assignment."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.errors import SiteError

RTOL, GRAD_RTOL = 1e-5, 1e-4
X = jnp.array([-1.2, 0.3, 2.1, 1.7])


def model_for(global_mode, local_mode="parallel"):
    def model(x):
        weights = jsvi.param("weights", jnp.ones(3) / 3, constraints.simplex)
        locs = jsvi.param("locs", jnp.zeros(3))
        regime = jsvi.sample(
            "regime", dist.Categorical(weights), infer={"enumerate": global_mode}
        )
        with jsvi.plate("data", x.shape[0]):
            z = jsvi.sample("z", dist.Bernoulli(0.3), infer={"enumerate": local_mode})
            jsvi.sample("x", dist.Normal(locs[regime] + 2.0 * z, 1.0), obs=x)

    return model


def guide(x):
    del x


def brute_force(p):
    """log p(x): every value of the regime and of each z, summed by hand."""
    total = []
    for r in range(3):
        per_point = jnp.stack(
            [
                jnp.log(jnp.where(z, 0.3, 0.7))
                + jax.scipy.stats.norm.logpdf(X, p["locs"][r] + 2.0 * z, 1.0)
                for z in (0, 1)
            ]
        )
        total.append(jnp.log(p["weights"][r]) + jnp.sum(jax.nn.logsumexp(per_point, 0)))
    return jax.nn.logsumexp(jnp.stack(total))


PARAMS = {"weights": jnp.array([0.2, 0.5, 0.3]), "locs": jnp.array([-1.0, 0.5, 1.5])}


def _value_and_grad(model):
    est = jsvi.TraceEnum_ELBO()
    return jax.jit(
        jax.value_and_grad(lambda p: -est.loss(jax.random.key(0), p, model, guide, X))
    )(PARAMS)


def test_sequential_equals_parallel_and_brute_force():
    want, want_grad = jax.value_and_grad(brute_force)(PARAMS)
    for mode in ("sequential", "parallel"):
        got, got_grad = _value_and_grad(model_for(mode))
        np.testing.assert_allclose(got, want, rtol=RTOL, err_msg=mode)
        for name in PARAMS:
            np.testing.assert_allclose(
                got_grad[name], want_grad[name], rtol=GRAD_RTOL, atol=1e-6
            )


def test_config_enumerate_sequential_with_two_global_sites():
    @jsvi.config_enumerate(default="sequential")
    def model(x):
        a = jsvi.sample("a", dist.Bernoulli(0.4))
        b = jsvi.sample("b", dist.Categorical(jnp.array([0.1, 0.6, 0.3])))
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", dist.Normal(a - b, 1.0), obs=x)

    want = jax.nn.logsumexp(
        jnp.stack(
            [
                jnp.log(jnp.array([0.6, 0.4])[a] * jnp.array([0.1, 0.6, 0.3])[b])
                + jnp.sum(jax.scipy.stats.norm.logpdf(X, a - b, 1.0))
                for a, b in itertools.product(range(2), range(3))
            ]
        )
    )
    got = -jsvi.TraceEnum_ELBO().loss(jax.random.key(0), {}, model, guide, X)
    np.testing.assert_allclose(got, want, rtol=RTOL)


def test_sequential_inside_a_plate_is_an_error():
    with pytest.raises(SiteError, match="sequential"):
        jsvi.TraceEnum_ELBO().loss(
            jax.random.key(0), PARAMS, model_for("parallel", "sequential"), guide, X
        )


def test_sequential_without_traceenum_elbo_is_an_error():
    with pytest.raises(SiteError, match="TraceEnum_ELBO"):
        jsvi.infer_discrete(model_for("sequential"), temperature=0)(X)
