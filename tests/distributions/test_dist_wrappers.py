"""to_event / expand / mask, enumerate_support and the wrapper distributions.

Numerical work is grouped into one ``jax.jit`` per test (one compilation instead
of many small op-by-op ones); validation behaviour is tested eagerly elsewhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

import jsvi.distributions as dist
from jsvi import constraints as C
from jsvi import transforms as T
from jsvi.distributions.kl import kl_divergence
from jsvi.errors import ShapeError

RTOL = 1e-5
rng = np.random.default_rng(1)
KEY = jax.random.key(0)


def f32(x):
    return np.asarray(x, dtype=np.float32)


LOC = f32(rng.normal(size=(2, 3)))
X = f32(rng.normal(size=(4, 2, 3)))


def test_to_event_moves_batch_dims_and_sums_log_prob():
    base = dist.Normal(LOC, 1.0)
    d, full = base.to_event(1), base.to_event()
    assert isinstance(d, dist.Independent)
    assert (d.batch_shape, d.event_shape) == ((2,), (3,))
    assert (full.batch_shape, full.event_shape) == ((), (2, 3))
    assert d.support == C.independent(C.real, 1)
    assert base.to_event(0) is base
    nested = d.to_event(1)  # Independent of Independent collapses
    assert isinstance(nested.base_dist, dist.Normal)
    assert nested.reinterpreted_batch_ndims == 2
    with pytest.raises(ShapeError, match="reinterpreted_batch_ndims"):
        base.to_event(3)

    @jax.jit
    def run(base, d, full):
        return (
            base.log_prob(X),
            d.log_prob(X),
            full.log_prob(X),
            d.sample(KEY, (5,)),
        )

    lp_base, lp, lp_full, x = run(base, d, full)
    assert lp.shape == (4, 2) and lp_full.shape == (4,) and x.shape == (5, 2, 3)
    np.testing.assert_allclose(lp, lp_base.sum(-1), rtol=RTOL)
    np.testing.assert_allclose(lp_full, lp_base.sum((-2, -1)), rtol=RTOL)


def test_expand_broadcasts_parameters():
    base = dist.Normal(LOC[0], 1.0)  # batch (3,)
    d = base.expand((4, 2, 3))
    assert d.batch_shape == (4, 2, 3) and isinstance(d, dist.Normal)
    assert base.expand((3,)) is base
    assert base.expand_by((2,)).batch_shape == (2, 3)
    with pytest.raises(ShapeError, match=r"cannot expand batch_shape \(3,\) to \(2,\)"):
        base.expand((2,))
    ind = dist.Normal(LOC, 1.0).to_event(1).expand((5, 2))
    assert (ind.batch_shape, ind.event_shape) == ((5, 2), (3,))

    @jax.jit
    def run(base, d):
        return d.sample(KEY, (5,)), d.log_prob(X[0]), base.log_prob(X[0])

    x, lp, lp_base = run(base, d)
    assert x.shape == (5, 4, 2, 3)
    assert lp.shape == (4, 2, 3)  # value (2, 3) broadcast against batch (4, 2, 3)
    np.testing.assert_allclose(lp, np.broadcast_to(lp_base, (4, 2, 3)))


class _Shifted(dist.Distribution):
    """A user-defined distribution without ``arg_constraints``: ``loc + N(0, 1)``."""

    has_rsample = True

    def __init__(self, loc):
        self.loc = jnp.asarray(loc)
        super().__init__()

    @property
    def batch_shape(self):
        return self.loc.shape

    def sample(self, key, sample_shape=()):
        return self.loc + jax.random.normal(key, self.shape(sample_shape))

    @property
    def mean(self):
        return self.loc

    def _log_prob(self, value):
        return -0.5 * (value - self.loc) ** 2 - 0.5 * np.log(2 * np.pi)


@pytest.mark.parametrize("make_base", [_Shifted, lambda loc: dist.Normal(loc, 1.0)])
def test_expanded_distribution_draws_independently_along_new_dims(make_base):
    base = make_base(f32([[0.0], [10.0]]))  # batch (2, 1)
    d = dist.ExpandedDistribution(base, (5, 2, 3))
    assert d.batch_shape == (5, 2, 3) and d.event_shape == ()
    assert d.has_rsample

    @jax.jit
    def run(d, base):
        x = d.sample(KEY, (4,))
        return x, d.log_prob(x), base.log_prob(x), d.mean

    x, lp, lp_base, mean = run(d, base)
    assert x.shape == (4, 5, 2, 3) and mean.shape == (5, 2, 3)
    # Independent along the expanded dims; the second base row is shifted by 10.
    assert float(jnp.std(x[:, :, 0, :])) > 0.5
    assert float(jnp.abs(x[:, :, 1, :].mean() - 10.0)) < 1.0
    assert len(np.unique(np.asarray(x[0, 0, 0]))) == 3
    np.testing.assert_allclose(lp, lp_base, rtol=RTOL)


def test_expanded_distribution_keeps_the_base_parameters():
    base = dist.Normal(LOC[0], 2.0)  # batch (3,)
    d = dist.ExpandedDistribution(base, (4, 2, 3))
    eager = base.expand((4, 2, 3))  # parameters broadcast
    assert d.base_dist.loc.shape == (1, 1, 3)  # padded on the left, not copied
    assert (d.batch_shape, d.event_shape) == ((4, 2, 3), ())
    assert d.support == C.real and d.has_rsample
    assert dist.ExpandedDistribution(d, (5, 4, 2, 3)).base_dist.loc.shape == (1, 1, 1, 3)
    masked = d.mask(np.array([True, False, True]))
    small = f32(rng.normal(size=(5, 1, 1, 1)))  # size-1 dims, as enumerated values

    @jax.jit
    def run(d, eager, masked):
        return (
            (d.log_prob(X[0]), eager.log_prob(X[0])),
            (d.log_prob(small), eager.log_prob(small)),
            (d.sample(KEY, (2,)), eager.sample(KEY, (2,))),
            (d.mean, eager.mean),
            (d.variance, eager.variance),
            (d.cdf(X[0]), eager.cdf(X[0])),
            (d.to_event(2).log_prob(X[0]), eager.to_event(2).log_prob(X[0])),
            (masked.log_prob(X[0]), eager.mask(masked._mask).log_prob(X[0])),
            (kl_divergence(d, eager), jnp.zeros((4, 2, 3))),
        )

    for lazy, full in run(d, eager, masked):
        assert lazy.shape == full.shape
        np.testing.assert_allclose(lazy, full, rtol=RTOL, atol=1e-6)
    # Draws equal those of the broadcast parameters when new dims are leading.
    assert run(d, eager, masked)[2][0].shape == (2, 4, 2, 3)


def test_mask_zeroes_log_prob_and_skips_masked_support_checks():
    m = np.array([True, False, True])
    base = dist.HalfNormal(f32([1.0, 2.0, 3.0]))
    d = base.mask(m)
    value = f32([0.5, -1.0, 2.0])  # invalid only where masked out: no error
    lp = np.asarray(d.log_prob(value))
    np.testing.assert_allclose(lp[1], 0.0)
    expected = st.halfnorm(scale=[1.0, 3.0]).logpdf([0.5, 2.0])
    np.testing.assert_allclose(lp[[0, 2]], expected, rtol=RTOL)
    assert base.mask(True) is base
    np.testing.assert_allclose(base.mask(False).log_prob(value), np.zeros(3))
    with pytest.raises(ShapeError, match="does not broadcast"):
        base.mask(np.array([True, False]))
    assert d.expand((4, 3)).batch_shape == (4, 3)
    assert d.sample(KEY, (2,)).shape == (2, 3)


def test_mask_with_event_dims():
    d = dist.Normal(LOC, 1.0).to_event(1).mask(np.array([False, True]))
    lp = jax.jit(lambda d: d.log_prob(X))(d)
    assert lp.shape == (4, 2)
    np.testing.assert_allclose(lp[:, 0], 0.0)


ENUM_CASES = {
    "Bernoulli": (dist.Bernoulli(f32(rng.uniform(size=(2, 3)))), 2, ()),
    "Binomial": (dist.Binomial(4, f32(rng.uniform(size=(2, 3)))), 5, ()),
    "Categorical": (dist.Categorical(logits=f32(rng.normal(size=(2, 3, 4)))), 4, ()),
    "OneHotCategorical": (
        dist.OneHotCategorical(logits=f32(rng.normal(size=(2, 3, 4)))),
        4,
        (4,),
    ),
    "Expanded": (dist.Bernoulli(0.3).expand((2, 3)), 2, ()),
    "ExpandedLazily": (dist.ExpandedDistribution(dist.Bernoulli(0.3), (2, 3)), 2, ()),
    "Masked": (
        dist.Categorical(logits=f32(rng.normal(size=(2, 3, 4)))).mask(True),
        4,
        (),
    ),
}


@jax.jit
def _enumerate(d):
    full, small = d.enumerate_support(), d.enumerate_support(expand=False)
    return full, small, d.support.check(full), d.log_prob(small)


@pytest.mark.parametrize("name", list(ENUM_CASES))
def test_enumerate_support_shapes_and_normalization(name):
    d, size, event = ENUM_CASES[name]
    assert d.has_enumerate_support
    full, small, in_support, lp = _enumerate(d)
    assert full.shape == (size, 2, 3) + event
    assert small.shape == (size, 1, 1) + event
    assert bool(jnp.all(in_support))
    assert lp.shape == (size, 2, 3)  # broadcast against the batch shape
    np.testing.assert_allclose(np.exp(lp).sum(0), np.ones((2, 3)), rtol=1e-5)


def test_binomial_enumeration_needs_a_single_count():
    d = dist.Binomial(np.array([2, 3]), 0.5)
    with pytest.raises(ValueError, match="total_count"):
        d.enumerate_support()
    assert dist.Binomial(np.array([3, 3]), 0.5).enumerate_support().shape == (4, 2)


def test_infinite_supports_cannot_be_enumerated():
    assert not dist.Poisson(2.0).has_enumerate_support
    assert not dist.Normal(0.0, 1.0).has_enumerate_support
    with pytest.raises(NotImplementedError, match="not finite"):
        dist.Poisson(2.0).enumerate_support()


def test_transformed_normal_by_exp_equals_lognormal():
    loc, scale = f32([0.0, 0.5]), f32([1.0, 0.3])
    td = dist.TransformedDistribution(dist.Normal(loc, scale), T.ExpTransform())
    assert td.support == C.positive
    assert (td.batch_shape, td.event_shape) == ((2,), ())
    assert td.has_rsample and not td.is_discrete
    x = f32(rng.gamma(2.0, size=(5, 2)))

    @jax.jit
    def run(td, ln):
        return td.log_prob(x), ln.log_prob(x), td.sample(KEY, (3,))

    lp, lp_ln, y = run(td, dist.LogNormal(loc, scale))
    np.testing.assert_allclose(lp, lp_ln, rtol=RTOL)
    assert y.shape == (3, 2) and bool(jnp.all(y > 0))


def test_transformed_affine_broadcasts_batch_and_matches_normal():
    loc = f32([1.0, -2.0, 3.0])
    td = dist.TransformedDistribution(
        dist.Normal(0.0, 1.0), [T.AffineTransform(loc, 2.0)]
    )
    assert td.batch_shape == (3,)
    assert td.expand((2, 3)).batch_shape == (2, 3)
    x = f32(rng.normal(size=(4, 3)))

    @jax.jit
    def run(td, ref):
        return td.log_prob(x), ref.log_prob(x), td.sample(KEY, (4,))

    lp, lp_ref, y = run(td, dist.Normal(loc, 2.0))
    np.testing.assert_allclose(lp, lp_ref, rtol=RTOL)
    assert y.shape == (4, 3)


def test_transformed_with_event_changing_transform():
    base = dist.Normal(jnp.zeros((2, 3)), 1.0)  # batch dims become the event dim
    td = dist.TransformedDistribution(base, T.StickBreakingTransform())
    assert (td.batch_shape, td.event_shape) == ((2,), (4,))
    assert td.support == C.simplex
    t = T.StickBreakingTransform()

    @jax.jit
    def run(td, base):
        y = td.sample(KEY, (5,))
        x = t.inv(y)
        expected = base.log_prob(x).sum(-1) - t.log_abs_det_jacobian(x, y)
        return y, C.simplex.check(y), td.log_prob(y), expected

    y, in_support, lp, expected = run(td, base)
    assert y.shape == (5, 2, 4) and bool(jnp.all(in_support))
    np.testing.assert_allclose(lp, expected, rtol=1e-4, atol=1e-4)


def test_transformed_log_prob_integrates_to_one():
    # Density of sigmoid(N(0.3, 0.8)) on (0, 1) by the trapezoid rule.
    td = dist.TransformedDistribution(dist.Normal(0.3, 0.8), T.SigmoidTransform())
    grid = np.linspace(1e-4, 1 - 1e-4, 4001)
    dens = np.exp(np.asarray(td.log_prob(f32(grid)), dtype=np.float64))
    np.testing.assert_allclose(np.trapezoid(dens, grid), 1.0, atol=2e-3)


def test_non_reparameterized_blocks_gradients_only():
    base = dist.Normal(f32([0.0, 1.0]), 1.0)
    d = dist.NonReparameterized(base)
    assert not d.has_rsample and base.has_rsample
    expanded = d.expand((4, 2))
    assert isinstance(expanded, dist.NonReparameterized)
    assert expanded.batch_shape == (4, 2)
    assert d.mean.shape == (2,) and d.support == C.real

    def draw_sum(loc, wrap):
        b = dist.Normal(loc, 1.0)
        return (dist.NonReparameterized(b) if wrap else b).sample(KEY).sum()

    def log_prob(loc):
        return dist.NonReparameterized(dist.Normal(loc, 1.0)).log_prob(0.5)

    @jax.jit
    def run(d, base):
        x = f32([0.3, 0.4])
        return (
            d.sample(KEY, (3,)),
            base.sample(KEY, (3,)),
            d.log_prob(x),
            base.log_prob(x),
            jax.grad(draw_sum)(1.0, True),
            jax.grad(draw_sum)(1.0, False),
            jax.grad(log_prob)(0.0),
        )

    x_nr, x, lp_nr, lp, g_nr, g, g_lp = run(d, base)
    np.testing.assert_array_equal(x_nr, x)
    np.testing.assert_allclose(lp_nr, lp)
    np.testing.assert_allclose([g_nr, g, g_lp], [0.0, 1.0, 0.5])


def test_non_reparameterized_draws_trace_no_sampler_derivative():
    # the Gamma sampler's pathwise derivative (a series in digamma and lgamma) is
    # what costs compile time; behind NonReparameterized it must not be traced
    def loss(a, wrap):
        base = dist.Gamma(a, 1.0)
        x = (dist.NonReparameterized(base) if wrap else base).sample(KEY)
        return x * a

    wrapped = str(jax.make_jaxpr(jax.grad(lambda a: loss(a, True)))(2.0))
    plain = str(jax.make_jaxpr(jax.grad(lambda a: loss(a, False)))(2.0))
    assert "digamma" in plain
    assert "digamma" not in wrapped
    x = dist.Gamma(2.0, 1.0).sample(KEY)
    np.testing.assert_allclose(jax.grad(lambda a: loss(a, True))(2.0), x)


def test_discrete_samples_carry_no_gradient():
    def f(p):
        return jnp.sum(dist.Bernoulli(p).sample(KEY, (10,)) * p)

    grad, draws = jax.jit(
        lambda p: (jax.grad(f)(p), dist.Bernoulli(p).sample(KEY, (10,)))
    )(0.5)
    np.testing.assert_allclose(grad, draws.sum())  # d/dp (sum(x) * p) with x fixed
