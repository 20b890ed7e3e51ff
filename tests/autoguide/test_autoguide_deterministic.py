"""``sample_posterior`` returns the model's ``deterministic`` sites, computed
from each draw (exact identities), for every kind of autoguide; ``Predictive``
returns them too."""

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
    AutoGuideList,
    AutoNormal,
)

X = jnp.array([0.3, -1.2, 2.1, 0.7, -0.4, 1.5])


def model(x, subsample_size=None):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    s = jsvi.sample("s", dist.LogNormal(0.0, 0.5))
    jsvi.deterministic("mu2", 2.0 * mu)
    with jsvi.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
        z = jsvi.sample("z", dist.Normal(mu, s))
        jsvi.deterministic("zs", z + s)
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x[idx])


def _guides():
    # AutoNormal: draws and deterministic sites in one pass over the guide;
    # AutoGuideList (like AutoLaplaceApproximation): deterministic sites from
    # finished draws (``with_deterministic``).
    return {
        "AutoNormal": lambda: AutoNormal(model),
        "AutoGuideList": lambda: AutoGuideList(
            model,
            [AutoDelta(handlers.block(model, expose=["s"])),
             AutoNormal(handlers.block(model, hide=["s"]))],
        ),
    }


def _params(guide, *args, **kwargs):
    svi = jsvi.SVI(model, guide, optax.adam(1e-2), jsvi.Trace_ELBO())
    return jsvi.get_params(svi, jsvi.svi_init(svi, 0, *args, **kwargs))


@pytest.mark.parametrize("name", list(_guides()))
def test_sample_posterior_returns_deterministic_sites(name):
    guide = _guides()[name]()
    params = _params(guide, X)
    draws = guide.sample_posterior(jax.random.key(1), params, X, sample_shape=(3, 2))
    assert draws["mu2"].shape == (3, 2) and draws["zs"].shape == (3, 2, 6)
    np.testing.assert_allclose(draws["mu2"], 2.0 * draws["mu"], rtol=1e-6)
    np.testing.assert_allclose(draws["zs"], draws["z"] + draws["s"][..., None], rtol=1e-6)


def test_deterministic_sites_follow_the_guides_subsample():
    guide = AutoNormal(model)
    params = _params(guide, X, subsample_size=2)
    draws = guide.sample_posterior(jax.random.key(2), params, X, subsample_size=2,
                                   sample_shape=(4,))
    assert draws["z"].shape == draws["zs"].shape == (4, 2)
    np.testing.assert_allclose(draws["zs"], draws["z"] + draws["s"][:, None], rtol=1e-6)


@pytest.fixture(scope="module")
def auto_normal():
    guide = AutoNormal(model)
    return guide, _params(guide, X)


def test_without_model_arguments_only_latents_come_back(auto_normal):
    guide, params = auto_normal
    draws = guide.sample_posterior(jax.random.key(1), params, sample_shape=(2,))
    assert sorted(draws) == ["mu", "s", "z"]


def test_predictive_returns_deterministic_sites_from_guide_and_samples(auto_normal):
    guide, params = auto_normal
    out = jsvi.Predictive(model, guide=guide, params=params, num_samples=5)(
        jax.random.key(3), X
    )
    np.testing.assert_allclose(out["mu2"], 2.0 * out["mu"], rtol=1e-6)
    samples = guide.sample_posterior(jax.random.key(4), params, X, sample_shape=(5,))
    again = jsvi.Predictive(model, posterior_samples=samples)(jax.random.key(5), X)
    np.testing.assert_allclose(again["zs"], samples["zs"], rtol=1e-6)
    prior = jsvi.Predictive(model, num_samples=5, return_sites=["zs"])(jax.random.key(6), X)
    assert list(prior) == ["zs"] and prior["zs"].shape == (5, 6)
