"""Mixture distributions under TraceEnum_ELBO's shape rules: the mixture dimension
is summed inside ``log_prob``, while enumerated sites upstream give the mixing
weights and component parameters enumeration dims of their own. Each ELBO (an
empty guide, so the exact log-likelihood) is checked against the sum written out
in numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special as ss
import scipy.stats as st

import jsvi
import jsvi.distributions as dist
from jsvi.infer.traceenum_elbo import TraceEnum_ELBO

RTOL = 1e-5  # float32: exact sums agree to rounding

W = np.array([0.2, 0.5, 0.3], np.float32)  # 3 values of the enumerated z
MIX = np.array([[0.3, 0.7], [0.6, 0.4], [0.1, 0.9]], np.float32)  # (z, component)
LOCS = np.array([[-1.0, 1.0], [0.0, 2.5], [-2.0, 0.5]], np.float32)
SCALES = np.array([0.7, 1.3], np.float32)
X = np.array([0.3, -1.2, 2.0, 0.9], np.float32)


def empty_guide(*args):
    del args


def _loss(model, *args):
    return float(
        TraceEnum_ELBO().loss(jax.random.key(0), {}, model, empty_guide, *args)
    )


def _component_pdf(x):
    """(N, z, component) normal densities."""
    return st.norm(LOCS, SCALES).pdf(np.float64(x)[:, None, None])


def test_global_enumerated_site_selects_the_mixture():
    @jsvi.config_enumerate
    def model(x):
        z = jsvi.sample("z", dist.Categorical(W))
        mixture = dist.MixtureSameFamily(
            dist.Categorical(MIX[z]), dist.Normal(LOCS[z], SCALES)
        )
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", mixture, obs=x)

    per_z = np.sum(np.log(np.sum(MIX * _component_pdf(X), -1)), 0)  # (z,)
    np.testing.assert_allclose(-_loss(model, X), ss.logsumexp(per_z, b=W), rtol=RTOL)


def test_local_enumerated_sites_inside_a_plate():
    @jsvi.config_enumerate
    def model(x):
        with jsvi.plate("data", x.shape[0]):
            z = jsvi.sample("z", dist.Categorical(W))
            general = dist.MixtureGeneral(
                dist.Categorical(MIX[z]),
                [
                    dist.Normal(LOCS[z, 0], SCALES[0]),
                    dist.Normal(LOCS[z, 1], SCALES[1]),
                ],
            )
            jsvi.sample("x", general, obs=x)

    per_point = np.log(np.sum(W * np.sum(MIX * _component_pdf(X), -1), -1))
    np.testing.assert_allclose(-_loss(model, X), per_point.sum(), rtol=RTOL)


def test_vector_event_components_with_an_enumerated_parent():
    locs = np.stack([LOCS, -LOCS], -1)  # (z, component, 2)
    x = np.array([[0.5, -0.5], [1.5, 0.2], [-1.0, 1.0]], np.float32)

    @jsvi.config_enumerate
    def model(x):
        z = jsvi.sample("z", dist.Categorical(W))
        comps = dist.MultivariateNormal(locs[z], scale_tril=jnp.eye(2))
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample(
                "x", dist.MixtureSameFamily(dist.Categorical(MIX[z]), comps), obs=x
            )

    dens = st.norm(locs, 1.0).pdf(np.float64(x)[:, None, None, :]).prod(-1)  # (N, z, k)
    per_z = np.sum(np.log(np.sum(MIX * dens, -1)), 0)
    np.testing.assert_allclose(-_loss(model, x), ss.logsumexp(per_z, b=W), rtol=RTOL)


def test_a_latent_discrete_mixture_is_enumerated_itself():
    # y ~ sum_k MIX[0, k] Bernoulli(P[k]); x | y ~ Normal(loc[y], 1)
    p = np.array([0.2, 0.9], np.float32)
    loc = np.array([-1.0, 2.0], np.float32)

    @jsvi.config_enumerate
    def model(x):
        with jsvi.plate("data", x.shape[0]):
            y = jsvi.sample(
                "y", dist.MixtureSameFamily(dist.Categorical(MIX[0]), dist.Bernoulli(p))
            )
            jsvi.sample("x", dist.Normal(jnp.asarray(loc)[y], 1.0), obs=x)

    p1 = np.sum(MIX[0] * p)
    lik = (1 - p1) * st.norm(loc[0]).pdf(np.float64(X)) + p1 * st.norm(loc[1]).pdf(
        np.float64(X)
    )
    np.testing.assert_allclose(-_loss(model, X), np.log(lik).sum(), rtol=RTOL)
