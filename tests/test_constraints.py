"""Tests of jsvi.constraints: membership checks, feasible points, hashing, pytrees."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsvi import constraints as C
from jsvi.errors import ShapeError

EYE3 = np.eye(3, dtype=np.float32)
CORR_L = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8]], dtype=np.float32)

# (constraint, a value inside, a value outside); values are single elements.
CASES = [
    (C.real, 3.0, np.inf),
    (C.real_vector, [1.0, -2.0], [1.0, np.nan]),
    (C.positive, 0.5, 0.0),
    (C.nonnegative, 0.0, -1e-3),
    (C.unit_interval, 1.0, 1.5),
    (C.interval(-1.0, 2.0), -1.0, 2.5),
    (C.greater_than(2.0), 2.5, 2.0),
    (C.less_than(-1.0), -3.0, -1.0),
    (C.simplex, [0.2, 0.3, 0.5], [0.2, 0.3, 0.6]),
    (
        C.lower_cholesky,
        EYE3 * 2 + np.tril(np.ones((3, 3)), -1),
        EYE3 - np.triu(EYE3 + 1, 1),
    ),
    (C.positive_definite, [[2.0, 0.5], [0.5, 1.0]], [[1.0, 2.0], [2.0, 1.0]]),
    (C.corr_cholesky, CORR_L, 2 * CORR_L),
    (C.boolean, 1, 2),
    (C.nonnegative_integer, 3.0, 2.5),
    (C.positive_integer, 1, 0),
    (C.integer_interval(0, 4), 4, 5),
    (C.integer_greater_than(2), 2, 1),
    (C.one_hot, [0, 1, 0], [1, 1, 0]),
    (C.independent(C.positive, 1), [1.0, 2.0], [1.0, -2.0]),
]
IDS = [repr(c) for c, _, _ in CASES]


def _case(constraint, inside, outside):
    inside, outside = jnp.asarray(inside), jnp.asarray(outside)
    values = jnp.stack([inside, outside, inside])  # batch of 3 elements
    batch = jnp.broadcast_to(values, (2,) + values.shape)
    proto = jnp.zeros((2,) + inside.shape, dtype=inside.dtype)
    feasible = constraint.feasible_like(proto)
    return (
        constraint.check(batch),
        constraint(inside),
        constraint(outside),
        feasible,
        constraint.check(feasible),
    )


@pytest.fixture(scope="module")
def results():
    """Every case in one compiled program (one compilation instead of many)."""
    return jax.jit(lambda: [_case(*case) for case in CASES])()


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_check_accepts_inside_rejects_outside_with_batch_dims(index, results):
    result, ok_in, ok_out, _, _ = results[index]
    assert result.shape == (2, 3)
    np.testing.assert_array_equal(result, [[True, False, True]] * 2)
    assert bool(ok_in) and not bool(ok_out)


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_feasible_like_lies_in_support(index, results):
    _, inside, _ = CASES[index]
    _, _, _, value, ok = results[index]
    assert value.shape == (2,) + np.shape(inside)
    assert bool(jnp.all(ok))


def test_event_dims_and_discreteness():
    assert C.real.event_dim == 0 and C.real_vector.event_dim == 1
    assert C.simplex.event_dim == 1 and C.corr_cholesky.event_dim == 2
    assert C.independent(C.lower_cholesky, 2).event_dim == 4
    for c in [C.boolean, C.nonnegative_integer, C.integer_interval(0, 3), C.one_hot]:
        assert c.is_discrete
    assert C.independent(C.boolean, 1).is_discrete
    for c in [C.real, C.positive, C.simplex, C.interval(0, 1)]:
        assert not c.is_discrete


def test_scalar_bounds_are_hashable_and_compare_by_value():
    a = C.interval(0, np.float32(1.0))
    b = C.interval(0.0, 1)
    assert a == b and hash(a) == hash(b)
    assert isinstance(a.upper_bound, float)
    assert C.greater_than(np.float64(2.0)) == C.greater_than(2)
    assert C.greater_than(1.0) != C.greater_than(2.0)
    assert C.positive != C.greater_than(0.0)  # different types, like NumPyro
    table = {C.real: "r", C.positive: "p", C.interval(0, 1): "i"}
    assert table[C.interval(0.0, 1.0)] == "i"
    assert C.independent(C.real, 1) == C.real_vector
    assert hash(C.independent(C.real, 1)) == hash(C.real_vector)
    assert C.independent(C.real, 0) is C.real


def test_constraints_are_immutable():
    with pytest.raises(AttributeError):
        C.interval(0, 1).lower_bound = 3.0  # type: ignore[misc]


def test_repr_is_readable():
    assert repr(C.positive) == "positive"
    assert repr(C.interval(0, 2)) == "interval(lower_bound=0.0, upper_bound=2.0)"
    assert repr(C.real_vector) == "independent(real, 1)"


def test_array_bounds_broadcast_and_are_unhashable():
    c = C.interval(jnp.zeros(3), jnp.array([1.0, 2.0, 3.0]))
    value = jnp.array([[0.5, 2.5, 3.0], [-0.1, 1.0, 1.0]])
    np.testing.assert_array_equal(
        c.check(value), [[True, False, True], [False, True, True]]
    )
    with pytest.raises(TypeError):
        hash(c)
    assert c == C.interval(jnp.zeros(3), jnp.array([1.0, 2.0, 3.0]))


def test_registered_as_static_pytree_nodes():
    tree = {"c": C.positive, "i": C.interval(0, 1), "x": jnp.ones(2)}
    assert len(jax.tree_util.tree_leaves(tree)) == 1

    @jax.jit
    def f(t):
        return t["c"].check(t["x"])

    assert bool(jnp.all(f(tree)))


def test_check_works_under_jit_and_vmap():
    c = C.simplex
    x = jnp.array([[0.5, 0.5], [0.7, 0.7]])
    np.testing.assert_array_equal(jax.jit(c.check)(x), [True, False])
    np.testing.assert_array_equal(jax.vmap(c.check)(x), [True, False])


def test_integrality_accepts_integer_dtypes_and_rejects_fractions():
    c = C.nonnegative_integer
    np.testing.assert_array_equal(c.check(jnp.array([0, 3])), [True, True])
    np.testing.assert_array_equal(c.check(jnp.array([1.0, 1.5, -1.0])), [1, 0, 0])
    np.testing.assert_array_equal(C.boolean.check(jnp.array([True, False])), [1, 1])


def test_too_few_event_dims_is_a_shape_error():
    with pytest.raises(ShapeError, match="simplex"):
        C.simplex.check(jnp.array(1.0))
