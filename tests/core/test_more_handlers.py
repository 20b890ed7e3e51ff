"""Handlers as decorators with arguments; ``do``, ``scope``, ``lift``,
``uncondition``; ``block(expose_types=/hide_types=)``."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.errors import ArgumentError


def get_trace(fn, *args):
    return handlers.trace(handlers.seed(fn, rng_key=0)).get_trace(*args)


def test_handlers_decorate_with_their_arguments():
    @handlers.scale(factor=2.0)
    @handlers.condition(data={"x": 1.0})
    def model():
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 1.0))

    tr = get_trace(model)
    assert tr["z"].scale == 2.0 and tr["x"].is_observed and float(tr["x"].value) == 1.0

    @handlers.seed(rng_key=3)
    def draw():
        return jsvi.sample("z", dist.Normal(0.0, 1.0))

    assert float(draw()) == float(draw())
    with pytest.raises(ArgumentError, match="scale: no function to run"):
        handlers.scale(factor=2.0)(1.0)


def test_do_cuts_the_graph_at_the_site():
    def model():
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        return jsvi.sample("x", dist.Normal(z, 1.0)), z

    with handlers.trace() as tr, handlers.seed(rng_key=1):
        (x, z) = handlers.do(model, data={"z": 4.0})()
    assert float(z) == 4.0
    # the site itself is still drawn from its prior and recorded under its name
    assert float(tr["z"].value) != 4.0 and not tr["z"].is_observed
    np.testing.assert_allclose(tr["x"].fn.loc, 4.0)
    assert list(tr) == ["z", "x"]


def test_scope_prefixes_sites_but_not_plates():
    @handlers.scope(prefix="part")
    def model(x):
        loc = jsvi.param("loc", 0.0)
        with jsvi.plate("data", x.shape[0]):
            z = jsvi.sample("z", dist.Normal(loc, 1.0))
            jsvi.deterministic("twice", 2 * z)

    tr = get_trace(model, jnp.zeros(3))
    assert list(tr) == ["part/loc", "data", "part/z", "part/twice"]
    with pytest.raises(ArgumentError, match="scope: prefix must be a non-empty str"):
        handlers.scope(model, prefix="")


def test_lift_turns_params_into_prior_draws():
    def model():
        return jsvi.param("w", 0.0), jsvi.param("b", 1.0)

    tr = get_trace(handlers.lift(model, prior={"w": dist.Normal(0.0, 1.0)}))
    assert tr["w"].kind == "sample" and tr["b"].kind == "param"
    everything = get_trace(handlers.lift(model, prior=dist.Normal(0.0, 1.0)))
    assert everything["w"].kind == everything["b"].kind == "sample"
    with pytest.raises(ArgumentError, match="lift: the prior for param 'w'"):
        get_trace(handlers.lift(model, prior={"w": 1.0}))


def test_uncondition_draws_observed_sites():
    def model():
        return jsvi.sample("x", dist.Normal(0.0, 1.0), obs=jnp.array(3.0))

    tr = get_trace(handlers.uncondition(model))
    assert not tr["x"].is_observed and tr["x"].infer["was_observed"]
    assert float(tr["x"].infer["obs"]) == 3.0 and float(tr["x"].value) != 3.0


def test_block_by_site_type():
    def model():
        jsvi.param("w", 1.0)
        jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.deterministic("d", 1.0)

    def traced(**kw):
        return list(handlers.trace(handlers.block(handlers.seed(model, rng_key=0), **kw))
                    .get_trace())

    assert traced(expose_types=["param"]) == ["w"]
    assert traced(hide_types=["param"]) == ["z", "d"]
    with pytest.raises(ArgumentError, match="block: expose_types must be a list"):
        handlers.block(model, expose_types="param")
