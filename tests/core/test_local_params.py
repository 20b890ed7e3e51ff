"""Local params: ``param(..., event_dim=)`` inside a subsampled plate is
subsampled with it; the stored param keeps the plate's full size."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.errors import ShapeError

N, B = 1_000, 100
X = 2.0 * jax.random.normal(jax.random.key(0), (N,))


def model(x, subsample_size=None, subsample=None):
    with jsvi.plate("data", N, subsample_size=subsample_size, subsample=subsample) as idx:
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x[idx])


def map_guide(x, subsample_size=None, subsample=None):
    del x
    with jsvi.plate("data", N, subsample_size=subsample_size, subsample=subsample):
        loc = jsvi.param("loc", jnp.zeros(N), event_dim=0)
        jsvi.sample("z", dist.Delta(loc))


def test_value_inside_the_plate_is_the_subsample_rows():
    idx = jnp.array([4, 0, 7])

    def f():
        with jsvi.plate("data", 10, subsample=idx):
            a = jsvi.param("a", jnp.arange(10.0), event_dim=0)
            b = jsvi.param("b", jnp.arange(20.0).reshape(10, 2), event_dim=1)
            c = jsvi.param("c", jnp.ones(1), event_dim=0)  # size 1 broadcasts
            g = jsvi.param("g", 3.0, event_dim=0)  # no plate dim: global
        return a, b, c, g

    tr = handlers.trace(f).get_trace()
    a, b, c, g = f()
    np.testing.assert_array_equal(a, [4.0, 0.0, 7.0])
    np.testing.assert_array_equal(b, jnp.arange(20.0).reshape(10, 2)[idx])
    assert c.shape == (1,) and float(g) == 3.0
    assert tr["a"].value.shape == (10,) and tr["b"].value.shape == (10, 2)


def test_nested_plates_index_each_plate_dim():
    def f():
        with jsvi.plate("rows", 6, subsample=jnp.array([5, 1])):
            with jsvi.plate("cols", 4, subsample=jnp.array([2])):
                # "rows" was entered first, so it takes dim -1 and "cols" dim -2
                return jsvi.param("w", jnp.arange(24.0).reshape(4, 6), event_dim=0)

    np.testing.assert_array_equal(f(), [[17.0, 13.0]])


def test_stored_param_has_the_full_plate_size():
    svi = jsvi.SVI(model, map_guide, optax.sgd(0.1), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, 0, X, subsample_size=B)
    assert state.params["loc"].shape == (N,)


def test_gradient_reaches_only_the_subsample_rows():
    """Exact identity: the minibatch gradient is N/B times the full-batch gradient
    on the subsample rows, and zero elsewhere."""
    idx = jax.random.permutation(jax.random.key(2), N)[:B]
    params = {"loc": 0.3 * X}
    loss = jsvi.Trace_ELBO()

    def grad(**kw):
        return jax.grad(lambda p: loss.loss(jax.random.key(3), p, model, map_guide, X, **kw))(
            params
        )["loc"]

    full, mini = grad(), grad(subsample=idx)
    outside = np.ones(N, bool)
    outside[np.asarray(idx)] = False
    assert np.all(np.asarray(mini)[outside] == 0.0)
    np.testing.assert_allclose(mini[idx], N / B * full[idx], rtol=1e-5)


def test_minibatch_training_reaches_the_full_batch_optimum():
    """MAP of z_i given x_i ~ N(z_i, 1), z_i ~ N(0, 1) is exactly x_i / 2.

    The loss is deterministic (Delta guide), so each row's SGD update contracts its
    error by |1 - 2 * lr * scale|: 0.2 per step full-batch (lr 0.4, scale 1), and
    0.2 each time the row is drawn with minibatches (lr 0.04, scale N/B = 10).
    In 400 steps a row is drawn Binomial(400, 0.1) times (mean 40, sd 6); fewer
    than 12 draws has probability below 1e-9, and 0.2**12 * max|x| is below float32
    resolution, so both runs must match x / 2 to float32 precision.
    """
    optima = []
    for subsample_size, lr in ((B, 0.04), (None, 0.4)):
        svi = jsvi.SVI(model, map_guide, optax.sgd(lr), jsvi.Trace_ELBO())
        state, _ = jsvi.svi_run(
            svi, jax.random.key(1), 400, X, subsample_size=subsample_size,
            progress_bar=False,
        )
        optima.append(jsvi.get_params(svi, state)["loc"])
    eps = float(jnp.finfo(jnp.float32).eps)
    for loc in optima:
        np.testing.assert_allclose(loc, X / 2, rtol=0, atol=8 * eps * float(jnp.abs(X).max()))
    np.testing.assert_allclose(optima[0], optima[1], rtol=0, atol=8 * eps * float(jnp.abs(X).max()))


def test_local_param_of_wrong_size_names_param_and_plate():
    def f():
        with jsvi.plate("data", 10, subsample_size=3):
            jsvi.param("loc", jnp.zeros(7), event_dim=0)

    with pytest.raises(ShapeError, match="param 'loc'.*plate 'data' has size 10"):
        handlers.seed(f, rng_key=0)()


def test_full_size_param_without_event_dim_gets_a_hint():
    def f():
        with jsvi.plate("data", 10, subsample_size=3):
            loc = jsvi.param("loc", jnp.zeros(10))
            jsvi.sample("z", dist.Normal(loc, 1.0))

    with pytest.raises(ShapeError, match="sample site 'z'.*event_dim"):
        handlers.seed(f, rng_key=0)()
