"""Autoguides: site shapes and supports, log-det-Jacobians, joint densities,
plates and subsampling, discrete sites and name clashes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
    init_to_feasible,
)
from jsvi.errors import ArgumentError, ModelGuideMismatchError, SiteError

ALL = [
    AutoDelta,
    AutoNormal,
    AutoDiagonalNormal,
    AutoMultivariateNormal,
    AutoLowRankMultivariateNormal,
]
JOINT = [AutoDiagonalNormal, AutoMultivariateNormal, AutoLowRankMultivariateNormal]
PER_SITE = [AutoDelta, AutoNormal]


def constrained_model():
    """One site per kind of support, in and out of a plate."""
    jsvi.sample("loc", dist.Normal(0.0, 1.0))
    jsvi.sample("scale", dist.Gamma(2.0, 1.0))
    jsvi.sample("prob", dist.Beta(2.0, 3.0))
    jsvi.sample("mix", dist.Dirichlet(jnp.ones(3)))
    jsvi.sample("bounded", dist.Uniform(-1.0, jnp.array([1.0, 2.0])))
    with jsvi.plate("group", 4):
        jsvi.sample("local", dist.LogNormal(0.0, 1.0))


def feasible(guide_cls, model):
    """A guide starting at fixed points (no prior draws: nothing to compile)."""
    return guide_cls(model, init_loc_fn=init_to_feasible)


def run_guide(guide, *args, key=0, **kwargs):
    return handlers.trace(handlers.seed(guide, rng_key=key)).get_trace(*args, **kwargs)


@pytest.mark.parametrize("guide_cls", ALL, ids=lambda c: c.__name__)
def test_values_lie_in_supports_and_match_model_shapes(guide_cls):
    guide = feasible(guide_cls, constrained_model)
    guide_tr = run_guide(guide)
    model_tr = handlers.trace(
        handlers.seed(handlers.replay(constrained_model, trace=guide_tr), 1)
    ).get_trace()
    for name, site in model_tr.latent_sites().items():
        value = guide_tr[name].value
        assert value.shape == tuple(site.fn.batch_shape) + tuple(site.fn.event_shape)
        assert bool(jnp.all(site.fn.support.check(value))), name
        assert bool(jnp.isfinite(jnp.sum(site.fn.log_prob(value)))), name


@pytest.mark.parametrize("guide_cls", ALL, ids=lambda c: c.__name__)
def test_guide_log_density_includes_the_log_det_jacobian(guide_cls):
    # log q of every site, summed, equals the Gaussian (or point mass) density of
    # the unconstrained values minus the log-det-Jacobians of the bijections.
    guide = feasible(guide_cls, constrained_model)
    tr = run_guide(guide, key=3)
    params = {n: s.value for n, s in tr.param_sites().items()}
    log_q = sum(
        float(jnp.sum(tr[n].fn.log_prob(tr[n].value))) for n in tr.latent_sites()
    )
    ladj, unconstrained = 0.0, []
    for name in tr.latent_sites():
        t = jsvi.transforms.biject_to(tr[name].fn.support)
        u = t.inv(tr[name].value)
        ladj += float(jnp.sum(t.log_abs_det_jacobian(u, tr[name].value)))
        unconstrained.append(u.reshape(-1))
    u = jnp.concatenate(unconstrained)
    if guide_cls is AutoDelta:
        assert log_q == 0.0  # a point mass in the model's own coordinates
        return
    if guide_cls is AutoNormal:
        locs = [params[f"{n}_auto_loc"].reshape(-1) for n in tr.latent_sites()]
        scales = [params[f"{n}_auto_scale"].reshape(-1) for n in tr.latent_sites()]
        base = dist.Normal(jnp.concatenate(locs), jnp.concatenate(scales)).to_event(1)
    else:
        base = guide.get_posterior(params)
    np.testing.assert_allclose(log_q, float(base.log_prob(u)) - ladj, rtol=1e-4)


@pytest.mark.parametrize(
    "guide_cls", [AutoMultivariateNormal, AutoLowRankMultivariateNormal]
)
def test_site_conditionals_multiply_to_the_joint_gaussian(guide_cls):
    # Sites are drawn one after another from the joint's conditionals; their
    # densities at any values multiply to the joint density (exact identity).
    def model():
        jsvi.sample("a", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
        jsvi.sample("b", dist.Normal(0.0, 1.0))
        jsvi.sample("c", dist.Normal(jnp.zeros((2, 2)), 1.0).to_event(2))

    guide = guide_cls(model)
    key = jax.random.key(4)
    params = {
        "auto_loc": jax.random.normal(jax.random.fold_in(key, 0), (7,)),
        "auto_scale_tril": jnp.tril(
            jax.random.normal(jax.random.fold_in(key, 1), (7, 7))
        )
        + 3 * jnp.eye(7),
        "auto_cov_factor": jax.random.normal(jax.random.fold_in(key, 2), (7, 3)),
        "auto_scale": jnp.linspace(0.5, 1.5, 7),
    }
    values = {"a": jnp.array([0.3, -1.0]), "b": jnp.array(2.0), "c": jnp.ones((2, 2))}
    tr = handlers.trace(
        handlers.seed(
            handlers.substitute(handlers.condition(guide, data=values), data=params), 0
        )
    ).get_trace()
    log_q = sum(tr[n].fn.log_prob(values[n]) for n in values)
    u = jnp.concatenate([values[n].reshape(-1) for n in ("a", "b", "c")])
    np.testing.assert_allclose(
        log_q, guide.get_posterior(params).log_prob(u), rtol=1e-5
    )


def local_model(x):
    """z_i ~ N(0, 1), x_i ~ N(z_i, 1): each z_i's posterior is N(x_i / 2, 1/2)."""
    with jsvi.plate("data", x.shape[0], subsample_size=5) as idx:
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x[idx])


X_LOCAL = jnp.linspace(-3.0, 3.0, 20)


@pytest.mark.parametrize("guide_cls", PER_SITE, ids=lambda c: c.__name__)
def test_local_latents_get_full_size_params_and_replay_indices(guide_cls):
    guide = guide_cls(local_model)
    svi = jsvi.SVI(local_model, guide, optax.adam(0.1), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, 0, X_LOCAL)
    params = jsvi.get_params(svi, state)
    assert params["z_auto_loc"].shape == (20,)
    guide_tr = run_guide(handlers.substitute(guide, data=params), X_LOCAL, key=7)
    indices = guide_tr["data"].value
    assert guide_tr["z"].value.shape == (5,)
    # The run's distribution is centred at the full-size params at its indices.
    np.testing.assert_allclose(
        guide_tr["z"].fn.mean, guide.median(params)["z"][indices]
    )
    model_tr = handlers.trace(
        handlers.seed(handlers.replay(local_model, trace=guide_tr), 8)
    ).get_trace(X_LOCAL)
    np.testing.assert_array_equal(model_tr["data"].value, indices)


@pytest.mark.slow
def test_subsampled_auto_normal_recovers_every_local_posterior():
    guide = AutoNormal(local_model)
    # Adam's iterate keeps a noise floor proportional to the final learning rate:
    # decayed to 5e-4, its rms error over the 20 locs is 0.014 (over 6 seeds, max
    # 0.036), so the bound below, 0.1 posterior sd = 0.071, is 5 rms. (Decayed
    # only to 2.5e-3, the rms is 0.025 and the max of 20 reaches the bound.)
    schedule = optax.exponential_decay(0.05, 4000, 0.01)
    svi = jsvi.SVI(local_model, guide, optax.adam(schedule), jsvi.Trace_ELBO(8))
    state, _ = jsvi.svi_run(svi, 0, 4000, X_LOCAL, progress_bar=False)
    params = jsvi.get_params(svi, state)
    post_sd = np.sqrt(0.5)
    np.testing.assert_array_less(
        np.abs(np.asarray(params["z_auto_loc"]) - np.asarray(X_LOCAL) / 2),
        0.1 * post_sd,
    )
    np.testing.assert_array_less(np.abs(np.log(params["z_auto_scale"] / post_sd)), 0.1)


def user_indices_model(x, idx):
    with jsvi.plate("data", 20, subsample=idx):
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


def test_model_given_subsample_indices_are_used_by_the_guide():
    idx = jnp.array([3, 17, 5])
    guide = AutoNormal(user_indices_model)
    params = {"z_auto_loc": jnp.arange(20.0), "z_auto_scale": jnp.full(20, 1e-6)}
    tr = run_guide(handlers.substitute(guide, data=params), X_LOCAL[idx], idx)
    np.testing.assert_array_equal(tr["data"].value, idx)
    np.testing.assert_allclose(tr["z"].value, idx.astype(float), atol=1e-4)


@pytest.mark.parametrize("guide_cls", JOINT, ids=lambda c: c.__name__)
def test_joint_guides_flatten_full_plates(guide_cls):
    def model():
        jsvi.sample("g", dist.Normal(0.0, 1.0))
        with jsvi.plate("data", 4):
            jsvi.sample("z", dist.Normal(jnp.zeros(2), 1.0).to_event(1))

    tr = run_guide(guide_cls(model))
    assert tr["auto_loc"].value.shape == (9,)
    assert tr["z"].value.shape == (4, 2)


@pytest.mark.parametrize("guide_cls", JOINT, ids=lambda c: c.__name__)
def test_joint_guides_reject_subsampled_plates(guide_cls):
    with pytest.raises(ArgumentError, match="'z'.*plate 'data', subsampled"):
        run_guide(guide_cls(local_model), X_LOCAL)


@pytest.mark.parametrize("guide_cls", ALL, ids=lambda c: c.__name__)
def test_discrete_latent_not_enumerated_is_an_error_naming_the_site(guide_cls):
    def model():
        c = jsvi.sample("c", dist.Categorical(jnp.ones(3) / 3))
        jsvi.sample("x", dist.Normal(c, 1.0), obs=0.5)

    with pytest.raises(SiteError, match=r"site 'c' is a discrete latent.*enumerat"):
        run_guide(guide_cls(model))


def test_enumerated_discrete_latents_are_left_to_the_estimator():
    def model():
        jsvi.sample("m", dist.Normal(0.0, 1.0))
        jsvi.sample("c", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})

    tr = run_guide(AutoNormal(model))
    assert "c" not in tr and "m" in tr


def test_param_name_clash_with_the_model_is_an_error():
    def model():
        jsvi.param("z_auto_loc", 0.0)
        jsvi.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(SiteError, match="prefix"):
        run_guide(AutoNormal(model))
    tr = run_guide(AutoNormal(model, prefix="q"))
    assert "z_q_loc" in tr


def test_sites_observed_when_first_run_are_left_to_the_model_later():
    def model(y=None):
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("y", dist.Bernoulli(logits=z), obs=y)

    guide = AutoNormal(model)
    run_guide(guide, 1.0)
    tr = run_guide(guide)  # y latent now: the guide does not cover it
    assert "y" not in tr and "z" in tr

    def model2(z_obs=None):
        jsvi.sample("z", dist.Normal(0.0, 1.0), obs=z_obs)

    guide2 = AutoNormal(model2)
    run_guide(guide2)
    with pytest.raises(ModelGuideMismatchError, match="'z'"):
        run_guide(guide2, 1.0)
