"""``plate_stack``, ``subsample(data, event_dim)`` and a plate whose size is taken
from its subsample."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.errors import ArgumentError, ShapeError


def get_trace(fn, *args):
    return handlers.trace(handlers.seed(fn, rng_key=0)).get_trace(*args)


def test_plate_stack_spans_the_batch_shape_from_rightmost_dim():
    def f():
        with jsvi.plate_stack("b", (2, 3, 4), rightmost_dim=-2):
            jsvi.sample("z", dist.Normal(0.0, 1.0).expand((5,)).to_event(1))
            jsvi.sample("w", dist.Normal(0.0, jnp.ones((4, 1))))

    tr = get_trace(f)
    assert tr["z"].value.shape == (2, 3, 4, 1, 5)  # batch dim -1 is left free
    assert tr["w"].fn.batch_shape == (2, 3, 4, 1)
    dims = {fr.name: (fr.dim, fr.size) for fr in tr["z"].cond_indep_stack}
    assert dims == {"b_0": (-2, 4), "b_1": (-3, 3), "b_2": (-4, 2)}
    with pytest.raises(ArgumentError, match="plate_stack 'b': rightmost_dim"):
        with jsvi.plate_stack("b", (2,), rightmost_dim=0):
            pass


def test_subsample_selects_the_plate_rows_of_full_data():
    x = jnp.arange(20.0).reshape(10, 2)
    y = jnp.arange(10.0)

    def model():
        with jsvi.plate("data", 10, subsample_size=4) as idx:
            xs = jsvi.subsample(x, event_dim=1)
            ys = jsvi.subsample(y, event_dim=0)
            jsvi.sample("y", dist.Normal(xs.sum(-1), 1.0), obs=ys)
        return idx, xs, ys

    idx, xs, ys = handlers.seed(model, rng_key=3)()
    np.testing.assert_array_equal(xs, x[idx])
    np.testing.assert_array_equal(ys, y[idx])
    np.testing.assert_array_equal(jsvi.subsample(y, event_dim=0), y)  # no plate


def test_subsample_of_wrong_size_names_the_plate():
    with pytest.raises(ShapeError, match="subsample: value of shape \\(7,\\).*plate 'data' has size 10"):
        with jsvi.plate("data", 10, subsample=jnp.array([1, 2])):
            jsvi.subsample(jnp.zeros(7), event_dim=0)
    with pytest.raises(ArgumentError, match="subsample: event_dim must be an int"):
        jsvi.subsample(jnp.zeros(3), event_dim=-1)


def test_plate_size_from_its_subsample():
    idx = jnp.array([3, 1, 4])

    def model(x):
        with jsvi.plate("data", subsample=idx) as i:
            jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x[i])

    tr = get_trace(model, jnp.arange(6.0))
    (frame,) = tr["x"].cond_indep_stack
    assert frame.size == frame.subsample_size == 3
    assert tr["x"].scale is None  # the subsample is the whole plate: no scaling
    with pytest.raises(ArgumentError, match="plate 'data': size is required"):
        jsvi.plate("data")
