"""Flax (nnx, linen) and Equinox modules in models and guides: weights registered as
one param, amortized guides trained under jit with a subsampled plate, and modules
that do not match their inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints, handlers
from jsvi.errors import ArgumentError, ShapeError
from jsvi.nn import eqx_module, flax_module

flax = pytest.importorskip("flax")
eqx = pytest.importorskip("equinox")
from flax import linen, nnx  # noqa: E402

# z_i ~ N(0, 1), x_i ~ N(z_i, 1): the posterior of z_i is N(x_i / 2, 1 / 2), which
# an amortized guide N(a x_i + b, s) holds exactly (a = 1/2, b = 0, s^2 = 1/2).
N = 512
X = jax.random.normal(jax.random.key(30), (N,)) * np.sqrt(2.0)
POST_SD = np.sqrt(0.5)


def model(x):
    with jsvi.plate("data", x.shape[0], subsample_size=32) as idx:
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x[idx])


def make_guide(kind):
    def encoder():
        if kind == "nnx":
            return flax_module("encoder", nnx.Linear(1, 1, rngs=nnx.Rngs(0)), (1,))
        if kind == "linen":
            return flax_module("encoder", linen.Dense(1), input_shape=(1,))
        net = eqx_module("encoder", eqx.nn.Linear(1, 1, key=jax.random.key(0)), (1,))
        return jax.vmap(net)

    def guide(x):
        apply = encoder()
        scale = jsvi.param("scale", 1.0, constraint=constraints.positive)
        with jsvi.plate("data", x.shape[0], subsample_size=32) as idx:
            loc = apply(x[idx][:, None])[:, 0]
            jsvi.sample("z", dist.Normal(loc, scale))

    return guide


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nnx", "linen", "eqx"])
def test_amortized_guide_learns_the_exact_posterior_under_jit(kind):
    guide = make_guide(kind)
    schedule = optax.exponential_decay(0.05, 2000, 0.05)
    loss = jsvi.Trace_ELBO(num_particles=4, stick_the_landing=True)
    svi = jsvi.SVI(model, guide, optax.adam(schedule), loss)
    state, _ = jsvi.svi_run(svi, 0, 2000, X, progress_bar=False)
    update = jax.jit(jsvi.svi_update, static_argnums=0)
    state, _ = update(svi, state, X)  # one more step, jitted by hand
    params = jsvi.get_params(svi, state)
    weights = jax.tree.leaves(params["encoder"])
    assert len(weights) == 2  # kernel and bias: one param holds the pytree
    # The guide's mean at every data point, within 0.1 posterior sd of x_i / 2.
    tr = handlers.trace(
        handlers.seed(handlers.substitute(guide, data=params), rng_key=1)
    ).get_trace(X)
    idx = tr["data"].value
    np.testing.assert_array_less(
        np.abs(np.asarray(tr["z"].fn.loc) - np.asarray(X[idx]) / 2), 0.1 * POST_SD
    )
    assert abs(np.log(float(params["scale"]) / POST_SD)) < 0.1


def run_seeded(fn):
    with handlers.seed(rng_key=0):
        return fn()


def test_weights_are_one_param_and_trained_values_are_used():
    net = nnx.Linear(3, 2, rngs=nnx.Rngs(0))

    def f():
        return flax_module("net", net, input_shape=(3,))(jnp.ones((4, 3)))

    tr = handlers.trace(f).get_trace()
    assert set(tr.param_sites()) == {"net"}
    shapes = jax.tree.map(jnp.shape, tr["net"].value)
    assert shapes == {"kernel": (3, 2), "bias": (2,)}
    zero = jax.tree.map(jnp.zeros_like, tr["net"].value)
    np.testing.assert_array_equal(handlers.substitute(f, data={"net": zero})(), 0.0)
    mlp = eqx.nn.MLP(3, 2, width_size=4, depth=1, key=jax.random.key(0))

    def g():
        return eqx_module("mlp", mlp)(jnp.ones(3))

    weights = handlers.trace(g).get_trace()["mlp"].value
    assert sorted(weights) == [
        ".layers[0].bias",
        ".layers[0].weight",
        ".layers[1].bias",
        ".layers[1].weight",
    ]
    zero = jax.tree.map(jnp.zeros_like, weights)
    np.testing.assert_array_equal(handlers.substitute(g, data={"mlp": zero})(), 0.0)


def test_modules_that_do_not_match_their_input_are_reported():
    with pytest.raises(ShapeError, match=r"flax_module 'enc'.*shapes \[\(5,\)\]"):
        flax_module("enc", nnx.Linear(3, 2, rngs=nnx.Rngs(0)), input_shape=(5,))
    with pytest.raises(ShapeError, match=r"eqx_module 'enc'.*shapes \[\(5,\)\]"):
        eqx_module("enc", eqx.nn.Linear(3, 2, key=jax.random.key(0)), input_shape=(5,))
    apply = flax_module("enc", nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(ShapeError, match=r"\(4, 5\)"):
        apply(jnp.ones((4, 5)))
    apply = run_seeded(lambda: flax_module("enc", linen.Dense(2), input_shape=(3,)))
    with pytest.raises(ShapeError, match="initialized with"):
        apply(jnp.ones((4, 5)))


def test_wrong_module_kinds_and_missing_arguments_are_reported():
    mlp = eqx.nn.MLP(3, 2, width_size=4, depth=1, key=jax.random.key(0))
    with pytest.raises(ArgumentError, match="eqx_module"):
        flax_module("m", mlp, (3,))
    with pytest.raises(ArgumentError, match="flax_module"):
        eqx_module("m", nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(ArgumentError, match="input_shape is required"):
        flax_module("m", linen.Dense(2))
    with pytest.raises(ArgumentError, match="input_shape must be"):
        flax_module("m", nnx.Linear(3, 2, rngs=nnx.Rngs(0)), input_shape="3")
    with pytest.raises(ArgumentError, match="batch_stats"):
        flax_module("m", linen.BatchNorm(use_running_average=False), input_shape=(4, 3))
