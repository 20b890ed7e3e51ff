"""kl_divergence: every closed form against a Monte Carlo estimate of
E_p[log p - log q], and the wrappers and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi.distributions as dist
from jsvi.distributions.kl import NoClosedFormError, kl_divergence
from jsvi.errors import ShapeError
from jsvi.testing import assert_mc_close

NUM_DRAWS = 4000

COV_A = jnp.array([[1.5, 0.4, 0.0], [0.4, 1.0, -0.3], [0.0, -0.3, 0.8]])
COV_B = jnp.array([[2.0, -0.2, 0.1], [-0.2, 0.7, 0.0], [0.1, 0.0, 1.2]])
MVN_A = dist.MultivariateNormal(jnp.array([0.1, -0.3, 0.5]), covariance_matrix=COV_A)
MVN_B = dist.MultivariateNormal(
    jnp.array([[0.0, 0.2, 0.1], [1.0, -1.0, 0.0]]), covariance_matrix=COV_B
)
LOWRANK_A = dist.LowRankMultivariateNormal(
    jnp.array([0.3, 0.0, -0.2]),
    jnp.array([[0.5], [-0.4], [0.2]]),
    jnp.array([0.6, 0.9, 0.5]),
)
LOWRANK_B = dist.LowRankMultivariateNormal(
    jnp.zeros(3),
    jnp.array([[0.3, 0.1], [0.2, -0.5], [0.0, 0.4]]),
    jnp.array([1.1, 0.8, 1.3]),
)

PAIRS = {
    "Normal": (
        dist.Normal(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5])),
        dist.Normal(jnp.array([0.5, 0.0]), jnp.array([2.0, 0.8])),
    ),
    "Exponential": (
        dist.Exponential(jnp.array([1.0, 3.0])),
        dist.Exponential(jnp.array([2.0, 0.5])),
    ),
    "Gamma": (
        dist.Gamma(jnp.array([2.0, 5.0]), jnp.array([1.0, 2.0])),
        dist.Gamma(jnp.array([3.0, 1.5]), jnp.array([0.5, 1.0])),
    ),
    "InverseGamma": (
        dist.InverseGamma(jnp.array([3.0, 5.0]), jnp.array([1.0, 2.0])),
        dist.InverseGamma(jnp.array([2.0, 6.0]), jnp.array([1.5, 1.0])),
    ),
    "Laplace": (
        dist.Laplace(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5])),
        dist.Laplace(jnp.array([0.5, -1.0]), jnp.array([2.0, 0.8])),
    ),
    "Gumbel": (
        dist.Gumbel(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5])),
        dist.Gumbel(jnp.array([0.5, -0.5]), jnp.array([2.0, 0.8])),
    ),
    "TruncatedNormal": (
        dist.TruncatedNormal(jnp.array([0.0, 2.0]), jnp.array([1.0, 0.5]), -1.0, 1.5),
        dist.TruncatedNormal(jnp.array([0.5, -1.0]), jnp.array([2.0, 0.8]), -1.0, 1.5),
    ),
    "TruncatedNormal(low)": (
        dist.TruncatedNormal(jnp.array([0.0, 2.0]), jnp.array([1.0, 0.5]), low=1.0),
        dist.TruncatedNormal(jnp.array([0.5, -1.0]), jnp.array([2.0, 0.8]), low=1.0),
    ),
    "Beta": (
        dist.Beta(jnp.array([2.0, 0.8]), jnp.array([3.0, 1.5])),
        dist.Beta(jnp.array([1.0, 2.0]), jnp.array([1.0, 2.5])),
    ),
    "Dirichlet": (
        dist.Dirichlet(jnp.array([[2.0, 1.0, 3.0], [0.7, 1.5, 1.0]])),
        dist.Dirichlet(jnp.array([1.0, 1.0, 1.0])),
    ),
    "Bernoulli-probs": (
        dist.Bernoulli(probs=jnp.array([0.2, 0.9])),
        dist.Bernoulli(probs=jnp.array([0.5, 0.6])),
    ),
    "Bernoulli-logits": (
        dist.Bernoulli(logits=jnp.array([-1.0, 2.0])),
        dist.Bernoulli(logits=jnp.array([0.5, 0.0])),
    ),
    "Categorical": (
        dist.Categorical(jnp.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])),
        dist.Categorical(logits=jnp.array([0.0, 1.0, -1.0])),
    ),
    "OneHotCategorical": (
        dist.OneHotCategorical(jnp.array([0.2, 0.5, 0.3])),
        dist.OneHotCategorical(jnp.array([0.4, 0.4, 0.2])),
    ),
    "MVN-MVN": (MVN_A, MVN_B),
    "MVN-LowRank": (MVN_A, LOWRANK_B),
    "LowRank-MVN": (LOWRANK_A, MVN_B),
    "LowRank-LowRank": (LOWRANK_A, LOWRANK_B),
    "Delta-Normal": (dist.Delta(jnp.array([0.3, -1.0]), 0.5), dist.Normal(0.0, 2.0)),
    "Delta-MVN": (dist.Delta(jnp.array([0.3, -1.0, 0.2]), event_dim=1), MVN_A),
    "Independent": (
        dist.Normal(jnp.zeros((2, 3)), 1.0).to_event(1),
        dist.Normal(jnp.ones((2, 3)), 1.5).to_event(1),
    ),
    "Expanded": (
        dist.ExpandedDistribution(dist.Gamma(2.0, 1.0), (2,)),
        dist.Gamma(jnp.array([1.0, 4.0]), 1.0),
    ),
    "Masked": (
        dist.Normal(jnp.zeros(2), 1.0).mask(jnp.array([True, False])),
        dist.Normal(1.0, 2.0),
    ),
    "NonReparameterized": (
        dist.NonReparameterized(dist.Exponential(2.0)),
        dist.Exponential(0.5),
    ),
}


@pytest.mark.statistical
@pytest.mark.parametrize("pair", list(PAIRS))
def test_closed_form_matches_monte_carlo(pair):
    p, q = PAIRS[pair]
    kl = kl_divergence(p, q)
    assert kl.shape == jnp.broadcast_shapes(p.batch_shape, q.batch_shape)
    if tuple(p.batch_shape) != kl.shape:
        p = p.expand(kl.shape)
    x = p.sample(jax.random.key(len(pair)), (NUM_DRAWS,))
    draws = p.log_prob(x) - q.log_prob(x)
    if isinstance(p, dist.MaskedDistribution):  # masked elements contribute 0
        draws = jnp.where(p._mask, draws, 0.0)
    assert_mc_close(np.broadcast_to(draws, (NUM_DRAWS,) + kl.shape), kl)


def test_kl_of_a_distribution_with_itself_is_zero():
    for name in (
        "Normal",
        "Gamma",
        "InverseGamma",
        "Laplace",
        "Gumbel",
        "TruncatedNormal",
        "Beta",
        "Dirichlet",
        "Categorical",
        "MVN-MVN",
        "LowRank-MVN",
    ):
        p, _ = PAIRS[name]
        np.testing.assert_allclose(kl_divergence(p, p), 0.0, atol=1e-5, err_msg=name)


def test_pair_without_closed_form_raises_a_catchable_error():
    with pytest.raises(NoClosedFormError, match="Laplace.*Normal.*Monte Carlo"):
        kl_divergence(dist.Laplace(0.0, 1.0), dist.Normal(0.0, 1.0))
    with pytest.raises(NoClosedFormError):
        kl_divergence(
            dist.Normal(jnp.zeros((2, 3)), 1.0).to_event(2), MVN_B.to_event(1)
        )  # same event shape, different structure
    assert issubclass(NoClosedFormError, ValueError)


def test_truncated_normal_kl_needs_the_same_bounds():
    p = dist.TruncatedNormal(0.0, 1.0, -1.0, 1.0)
    for q in [
        dist.TruncatedNormal(0.0, 1.0, -1.0, 2.0),
        dist.TruncatedNormal(0.0, 1.0, low=-1.0),
    ]:
        with pytest.raises(NoClosedFormError, match="same low and high"):
            kl_divergence(p, q)


def test_new_kl_entries_are_differentiable():
    # d/dscale_p of KL(Laplace(0, s) || Laplace(0, 1)) = -1/s + 1 (at loc_p = loc_q)
    g = jax.grad(lambda s: kl_divergence(dist.Laplace(0.0, s), dist.Laplace(0.0, 1.0)))(
        2.0
    )
    np.testing.assert_allclose(g, 0.5, rtol=1e-6)
    # KL(Gumbel(m, 1) || Gumbel(0, 1)) = m + exp(-m) - 1, derivative 1 - exp(-m)
    g = jax.grad(lambda m: kl_divergence(dist.Gumbel(m, 1.0), dist.Gumbel(0.0, 1.0)))(
        0.7
    )
    np.testing.assert_allclose(g, 1 - np.exp(-0.7), rtol=1e-5)


def test_event_shapes_must_agree():
    with pytest.raises(ShapeError, match="event_shape"):
        kl_divergence(
            dist.Normal(jnp.zeros(3), 1.0).to_event(1), MVN_A.expand((1,)).to_event(1)
        )


def test_kl_is_differentiable():
    def f(loc):
        return kl_divergence(dist.Normal(loc, 1.0), dist.Normal(0.0, 2.0))

    # d/dloc (loc^2 / 8) = loc / 4
    np.testing.assert_allclose(jax.grad(f)(1.2), 0.3, rtol=1e-6)
