"""TraceMeanField_ELBO: same expected gradient as Trace_ELBO with lower variance,
closed-form KL terms with plates/scale/mask, Monte Carlo fallback, and the
warning for guides that are not mean field."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints, handlers
from jsvi.distributions.kl import kl_divergence
from jsvi.errors import SiteError
from jsvi.infer.meanfield_elbo import (
    GuideDependencyWarning,
    TraceMeanField_ELBO,
    guide_dependencies,
)
from jsvi.infer.traceenum_elbo import TraceEnum_ELBO
from jsvi.testing import assert_mc_close, standard_error

X = jnp.array([0.8, 1.7, -0.2])
N = X.shape[0]
M0, S0 = 0.3, 0.6  # where the gradients are evaluated


def nn_model(x):
    z = jsvi.sample("z", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


def nn_guide(x):
    del x
    m = jsvi.param("m", M0)
    s = jsvi.param("s", S0, constraint=constraints.positive)
    jsvi.sample("z", dist.Normal(m, s))


def exact_loss_grad(m, s):
    """Gradient of -ELBO w.r.t. (m, log s) for the Normal-Normal model."""
    d_m = float(jnp.sum(X)) - (N + 1) * m
    d_s = -(N + 1) * s + 1 / s
    return np.array([-d_m, -d_s * s])


@pytest.mark.statistical
def test_same_expected_gradient_as_trace_elbo_with_lower_variance():
    num = 2000
    out = {}
    for name, loss in (
        ("trace", jsvi.Trace_ELBO()),
        ("meanfield", TraceMeanField_ELBO()),
    ):
        svi = jsvi.SVI(nn_model, nn_guide, optax.sgd(0.1), loss)
        state = jsvi.svi_init(svi, jax.random.key(0), X)
        out[name] = jsvi.diagnostics.gradient_variance(svi, state, X, num_samples=num)
    want = exact_loss_grad(M0, S0)
    for name, res in out.items():
        mean = np.array([res["mean"]["m"], res["mean"]["s"]])
        se = np.sqrt(np.array([res["variance"]["m"], res["variance"]["s"]]) / num)
        err = np.abs(mean - want)
        assert np.all(err <= 4.5 * se), (name, mean, want, se)
    # The m-gradient is linear in the draw eps (z = m + s eps): its variance is
    # (N+1)^2 s^2 for Trace_ELBO and N^2 s^2 with the analytic KL. A sample
    # variance of n Gaussian draws has standard error var * sqrt(2 / (n - 1)).
    for name, coeff in (("trace", N + 1), ("meanfield", N)):
        var = float(out[name]["variance"]["m"])
        truth = (coeff * S0) ** 2
        assert abs(var - truth) <= 4 * truth * np.sqrt(2 / (num - 1)), (
            name,
            var,
            truth,
        )
    assert out["meanfield"]["variance"]["m"] < out["trace"]["variance"]["m"]
    assert out["meanfield"]["variance"]["s"] < out["trace"]["variance"]["s"]


def test_kl_terms_carry_plate_scale_and_mask():
    idx = jnp.array([1, 3])
    keep = jnp.array([True, False])
    locs = jnp.array([0.5, -0.2, 1.0, 0.3])

    def model():
        with jsvi.plate("items", 4, subsample=idx), handlers.mask(mask=keep):
            jsvi.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        with jsvi.plate("items", 4, subsample=idx) as i, handlers.mask(mask=keep):
            jsvi.sample("z", dist.Normal(locs[i], 0.5))

    loss = TraceMeanField_ELBO().loss(jax.random.key(0), {}, model, guide)
    kl = kl_divergence(dist.Normal(locs[idx], 0.5), dist.Normal(0.0, 1.0))
    # Only element idx[0] is kept, and the plate scales it by 4 / 2: no draw enters.
    np.testing.assert_allclose(loss, 2.0 * kl[0], rtol=1e-6)


def test_without_closed_form_it_is_trace_elbo():
    def model(x):
        z = jsvi.sample("z", dist.Laplace(0.0, 1.0))
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", dist.Normal(z, 1.0), obs=x)

    params = {"m": jnp.array(M0), "s": jnp.array(S0)}
    key = jax.random.key(3)

    def value_and_grad(est):
        return jax.value_and_grad(lambda p: est.loss(key, p, model, nn_guide, X))(
            params
        )

    (v_mf, g_mf), (v_tr, g_tr) = (
        value_and_grad(TraceMeanField_ELBO()),
        value_and_grad(jsvi.Trace_ELBO()),
    )
    np.testing.assert_allclose(v_mf, v_tr, rtol=1e-6)
    for name in params:
        np.testing.assert_allclose(g_mf[name], g_tr[name], rtol=1e-6)


@pytest.mark.statistical
def test_score_function_site_with_analytic_kl_is_unbiased():
    def model():
        z = jsvi.sample("z", dist.Bernoulli(0.3))
        jsvi.sample("x", dist.Normal(2.0 * z, 1.0), obs=1.4)

    def guide():
        jsvi.sample(
            "z", dist.Bernoulli(jsvi.param("p", 0.6, constraints.unit_interval))
        )

    params = {"p": jnp.array(0.6)}
    exact = jax.grad(
        lambda p: TraceEnum_ELBO().loss(
            jax.random.key(0), p, model, jsvi.config_enumerate(guide)
        )
    )(params)["p"]
    keys = jax.random.split(jax.random.key(4), 4000)
    grad = jax.jit(
        jax.vmap(
            lambda k: jax.grad(
                lambda p: TraceMeanField_ELBO().loss(k, p, model, guide)
            )(params)["p"]
        )
    )(keys)
    assert_mc_close(grad, exact)
    assert float(standard_error(grad)) > 0  # a real Monte Carlo check, not an identity


def dependent_guide(x):
    del x
    m = jsvi.param("m", M0)
    z = jsvi.sample("z", dist.Normal(m, 1.0))
    jsvi.sample("w", dist.Normal(0.5 * z, 1.0))


def dependent_model(x):
    z = jsvi.sample("z", dist.Normal(0.0, 1.0))
    w = jsvi.sample("w", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(z + w, 1.0), obs=x)


def test_guide_with_dependencies_warns_once_at_user_code():
    svi = jsvi.SVI(
        dependent_model, dependent_guide, optax.sgd(0.1), TraceMeanField_ELBO()
    )
    with pytest.warns(GuideDependencyWarning, match="'w' on 'z'") as record:
        state = jsvi.svi_init(svi, jax.random.key(0), X)
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jsvi.svi_update(svi, state, X)  # the check ran once, at init


def test_dependency_analysis():
    def mean_field(x):
        del x
        jsvi.sample("z", dist.Normal(jsvi.param("m", 0.0), 1.0))
        jsvi.sample("w", dist.Gamma(2.0, jnp.exp(jsvi.param("m", 0.0))))

    def no_params(msg):
        del msg

    assert guide_dependencies(jax.random.key(0), mean_field, no_params, (X,), {}) == []
    assert guide_dependencies(
        jax.random.key(0), dependent_guide, no_params, (X,), {}
    ) == [("w", "z")]


def test_enumerated_model_site_is_an_error():
    @jsvi.config_enumerate
    def model():
        jsvi.sample("c", dist.Bernoulli(0.5))

    with pytest.raises(SiteError, match="'c'.*TraceEnum_ELBO"):
        TraceMeanField_ELBO().loss(jax.random.key(0), {}, model, lambda: None)
