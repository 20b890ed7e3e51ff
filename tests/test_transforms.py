"""Tests of jsvi.transforms: round trips, log-det vs. autodiff Jacobians, biject_to."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsvi import constraints as C
from jsvi import transforms as T
from jsvi.errors import ArgumentError, ShapeError


def _normal(shape, seed=0, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), shape)


def _tril(n, k=0):
    rows, cols = np.tril_indices(n, k)
    return lambda m: m[..., rows, cols]


def _fill_tril(n):
    rows, cols = np.tril_indices(n)
    return lambda v: jnp.zeros((n, n), v.dtype).at[rows, cols].set(v)


_ident = lambda v: v  # noqa: E731
_L = T.LowerCholeskyTransform()(_normal((2, 6), seed=3, scale=0.5))

# name -> (transform, batched input, flat_in, unflat_in, flat_out, ladj dims to sum)
# flat_* map one batch element to its free coordinates; the Jacobian of
# flat_out(t(unflat_in(v))) must be square and its log|det| equal the log-det.
JACOBIAN_CASES = {
    "exp": (T.ExpTransform(), _normal((2, 3)), _ident, _ident, _ident, 1),
    "sigmoid": (T.SigmoidTransform(), _normal((2, 3)), _ident, _ident, _ident, 1),
    "affine": (
        T.AffineTransform(jnp.array([1.0, -2.0, 0.5]), jnp.array([2.0, -0.5, 3.0])),
        _normal((2, 3)),
        _ident,
        _ident,
        _ident,
        1,
    ),
    "power": (
        T.PowerTransform(1.7),
        jnp.exp(_normal((2, 3))),
        _ident,
        _ident,
        _ident,
        1,
    ),
    "compose_exp_affine": (
        T.ComposeTransform([T.ExpTransform(), T.AffineTransform(2.0, 3.0)]),
        _normal((2, 3)),
        _ident,
        _ident,
        _ident,
        1,
    ),
    "interval": (
        T.biject_to(C.interval(-1.0, 3.0)),
        _normal((2, 3)),
        _ident,
        _ident,
        _ident,
        1,
    ),
    "independent_exp": (
        T.IndependentTransform(T.ExpTransform(), 1),
        _normal((2, 3)),
        _ident,
        _ident,
        _ident,
        0,
    ),
    "stick_breaking": (
        T.StickBreakingTransform(),
        _normal((2, 3)),
        _ident,
        _ident,
        lambda y: y[:-1],
        0,
    ),
    "lower_cholesky": (
        T.LowerCholeskyTransform(),
        _normal((2, 6)),
        _ident,
        _ident,
        _tril(3),
        0,
    ),
    "corr_cholesky": (
        T.CorrCholeskyTransform(),
        _normal((2, 3)),
        _ident,
        _ident,
        _tril(3, -1),
        0,
    ),
    "cholesky_outer": (
        T.CholeskyOuterTransform(),
        _L,
        _tril(3),
        _fill_tril(3),
        _tril(3),
        0,
    ),
    "positive_definite": (
        T.biject_to(C.positive_definite),
        _normal((2, 6)),
        _ident,
        _ident,
        _tril(3),
        0,
    ),
}


def _jacobian_case(name):
    t, x, flat_in, unflat_in, flat_out, _ = JACOBIAN_CASES[name]

    def free(v):
        return flat_out(t(unflat_in(v)))

    y = t(x)
    jac = jax.vmap(jax.jacobian(free))(jax.vmap(flat_in)(x))
    return y, t.inv(y), t.log_abs_det_jacobian(x, y), jac


@pytest.fixture(scope="module")
def jacobian_results():
    """Every case in one compiled program (one compilation instead of many)."""
    return jax.jit(lambda: {name: _jacobian_case(name) for name in JACOBIAN_CASES})()


@pytest.mark.parametrize("name", list(JACOBIAN_CASES))
def test_round_trip_and_log_det_match_autodiff_jacobian(name, jacobian_results):
    t, x, _, _, _, extra = JACOBIAN_CASES[name]
    y, x_back, ladj, jac = jacobian_results[name]
    assert y.shape == t.forward_shape(x.shape)
    assert t.inverse_shape(y.shape) == x.shape
    np.testing.assert_allclose(x_back, x, rtol=1e-4, atol=1e-4)
    assert ladj.shape == x.shape[: x.ndim - t.domain.event_dim]
    ladj = ladj.sum(axis=tuple(range(-extra, 0))) if extra else ladj
    assert ladj.shape == (2,)
    assert jac.shape[-1] == jac.shape[-2]
    _, expected = np.linalg.slogdet(np.asarray(jac, dtype=np.float64))
    np.testing.assert_allclose(ladj, expected, rtol=1e-4, atol=1e-4)


def test_log_det_is_summed_over_event_dims_only():
    for t, x_shape, y_shape in [
        (T.StickBreakingTransform(), (4, 2, 3), (4, 2, 4)),
        (T.CorrCholeskyTransform(), (4, 2, 6), (4, 2, 4, 4)),
    ]:
        y, ladj = jax.eval_shape(
            lambda x, t=t: (t(x), t.log_abs_det_jacobian(x, t(x))),
            jax.ShapeDtypeStruct(x_shape, jnp.float32),
        )
        assert y.shape == y_shape and ladj.shape == (4, 2)


def test_transforms_work_under_jit_vmap_and_grad():
    t = T.biject_to(C.simplex)
    x = _normal((5, 3))

    def loss(x):
        return jnp.sum(t(x) ** 2) + jnp.sum(t.log_abs_det_jacobian(x, t(x)))

    @jax.jit
    def run(x):
        return t(x), jax.vmap(t)(x), jax.grad(loss)(x)

    y, y_vmap, grad = run(x)
    np.testing.assert_allclose(y_vmap, y, rtol=1e-6)
    np.testing.assert_allclose(y, t(x), rtol=1e-5)  # eager == jit
    assert grad.shape == x.shape and bool(jnp.all(jnp.isfinite(grad)))


def test_sigmoid_and_stick_breaking_are_stable_at_extremes():
    x = jnp.array([-200.0, -30.0, 0.0, 30.0, 200.0])
    s, sb = T.SigmoidTransform(), T.StickBreakingTransform()

    @jax.jit
    def run(x):
        y, z = s(x), sb(x)
        grad = jax.grad(lambda v: s(v).sum())(x)
        return (
            y,
            s.inv(y),
            s.log_abs_det_jacobian(x, y),
            grad,
            z,
            sb.log_abs_det_jacobian(x, z),
        )

    y, x_back, ladj, grad, z, ladj_sb = run(x)
    assert bool(jnp.all((y > 0) & (y < 1)))
    for arr in [x_back, ladj, grad, ladj_sb]:
        assert bool(jnp.all(jnp.isfinite(arr)))
    assert bool(C.simplex.check(z))


BIJECT_CASES = [
    (C.real, (2, 3)),
    (C.real_vector, (2, 3)),
    (C.positive, (2, 3)),
    (C.nonnegative, (2, 3)),
    (C.unit_interval, (2, 3)),
    (C.interval(-3.0, 2.5), (2, 3)),
    (C.interval(jnp.zeros(3), jnp.arange(1.0, 4.0)), (2, 3)),
    (C.greater_than(2.0), (2, 3)),
    (C.less_than(-1.0), (2, 3)),
    (C.simplex, (2, 4)),
    (C.lower_cholesky, (2, 3, 3)),
    (C.positive_definite, (2, 3, 3)),
    (C.corr_cholesky, (2, 3, 3)),
    (C.independent(C.positive, 2), (2, 3, 4)),
]


def _biject_case(constraint, shape, seed):
    t = T.biject_to(constraint)
    x = _normal(t.inverse_shape(shape), seed=seed, scale=2.0)
    y = t(x)
    return x, y, constraint.check(y), t.inv(y), t.log_abs_det_jacobian(x, y)


@pytest.fixture(scope="module")
def biject_results():
    """Every case in one compiled program."""
    return jax.jit(
        lambda: [_biject_case(c, shape, i) for i, (c, shape) in enumerate(BIJECT_CASES)]
    )()


@pytest.mark.parametrize(
    "index", range(len(BIJECT_CASES)), ids=[repr(c) for c, _ in BIJECT_CASES]
)
def test_biject_to_maps_random_reals_into_the_constraint(index, biject_results):
    constraint, shape = BIJECT_CASES[index]
    x, y, ok, x_back, ladj = biject_results[index]
    assert y.shape == shape
    assert T.biject_to(constraint).codomain.event_dim == constraint.event_dim
    assert ok.shape == shape[: len(shape) - constraint.event_dim]
    assert bool(jnp.all(ok))
    np.testing.assert_allclose(x_back, x, rtol=1e-3, atol=1e-3)
    assert ladj.shape == ok.shape


def test_biject_to_types_and_codomains():
    assert isinstance(T.biject_to(C.real), T.IdentityTransform)
    assert isinstance(T.biject_to(C.positive), T.ExpTransform)
    assert isinstance(T.biject_to(C.unit_interval), T.SigmoidTransform)
    assert isinstance(T.biject_to(C.simplex), T.StickBreakingTransform)
    assert T.biject_to(C.greater_than(2.0)).codomain == C.greater_than(2.0)
    assert T.biject_to(C.less_than(-1.0)).codomain == C.less_than(-1.0)
    assert T.biject_to(C.interval(0.0, 4.0)).codomain == C.interval(0.0, 4.0)
    assert T.biject_to(C.positive_definite).codomain == C.positive_definite
    assert T.biject_to(C.real_vector).codomain == C.real_vector


def test_biject_to_rejects_discrete_and_unknown_constraints():
    with pytest.raises(ArgumentError, match="boolean"):
        T.biject_to(C.boolean)

    class Odd(C.Constraint):
        def check(self, value):
            return jnp.asarray(value) % 2 == 1

    with pytest.raises(ArgumentError, match="odd"):
        T.biject_to(Odd())


def test_biject_to_registry_is_read_only():
    from jsvi.transforms.biject import _BIJECTIONS

    assert isinstance(_BIJECTIONS, types.MappingProxyType)
    with pytest.raises(TypeError):
        _BIJECTIONS[C.Real] = lambda c: T.ExpTransform()  # type: ignore[index]


def test_shape_errors_for_impossible_vector_sizes():
    with pytest.raises(ShapeError, match="LowerCholeskyTransform"):
        T.LowerCholeskyTransform()(jnp.zeros(4))
    with pytest.raises(ShapeError, match="CorrCholeskyTransform"):
        T.CorrCholeskyTransform()(jnp.zeros(2))


def test_transforms_are_pytrees():
    t = T.ComposeTransform([T.ExpTransform(), T.AffineTransform(jnp.ones(2), 2.0)])
    leaves = jax.tree_util.tree_leaves(t)
    assert len(leaves) == 2  # loc array and the scale 2.0

    @jax.jit
    def apply(t, x):
        return t(x)

    np.testing.assert_allclose(apply(t, jnp.zeros(2)), t(jnp.zeros(2)))
    assert T.ExpTransform() == T.ExpTransform()
    assert hash(T.ExpTransform()) == hash(T.ExpTransform())


def test_corr_matrix_bijection_round_trip_and_jacobian():
    """biject_to(corr_matrix): reals onto correlation matrices; its log-Jacobian
    (over the strictly lower entries) against jacfwd's determinant."""
    t = T.biject_to(C.corr_matrix)
    x = jnp.array([0.3, -0.5, 0.8])
    y = t(x)
    assert bool(C.corr_matrix.check(y))
    np.testing.assert_allclose(t.inv(y), x, rtol=1e-5, atol=1e-6)
    rows, cols = np.tril_indices(3, -1)
    jac = jax.jacfwd(lambda v: t(v)[rows, cols])(x)
    np.testing.assert_allclose(
        t.log_abs_det_jacobian(x, y), np.linalg.slogdet(jac)[1], rtol=1e-5, atol=1e-6
    )
