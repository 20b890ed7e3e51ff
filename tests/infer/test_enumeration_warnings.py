"""Typed warnings, as Pyro gives them: a plate in the guide but not the model,
an observed site marked for enumeration, and nothing marked for enumeration."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.errors import EnumerationWarning, GuidePlateWarning
from jsvi.infer.checks import warn_if_nothing_enumerated

X = jnp.array([0.3, -1.2, 2.1])


def model(x):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=x)


def test_plate_in_guide_but_not_model_warns():
    def guide(x):
        with jsvi.plate("extra", 4):
            pass
        jsvi.sample("mu", dist.Normal(jsvi.param("m", 0.0), 1.0))

    with pytest.warns(GuidePlateWarning, match="guide: plates \\['extra'\\] are in the guide"):
        jsvi.validate(model, guide, X)


def test_observed_site_marked_for_enumeration_warns():
    def enum_model(x):
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("c", dist.Bernoulli(0.5), obs=x, infer={"enumerate": "parallel"})

    with pytest.warns(EnumerationWarning, match="model site 'c': observed, but marked"):
        jsvi.validate(enum_model, lambda x: None, jnp.array([1.0, 0.0]))


def _traces(fn, *args):
    return handlers.trace(handlers.seed(fn, rng_key=0)).get_trace(*args)


def test_strict_enumeration_warning_when_nothing_is_enumerated():
    def mixture(x):
        with jsvi.plate("data", x.shape[0]):
            c = jsvi.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
            jsvi.sample("x", dist.Normal(c, 1.0), obs=x)

    empty = _traces(lambda x: None, X)
    with pytest.warns(EnumerationWarning, match="TraceEnum_ELBO: no sample site is marked"):
        warn_if_nothing_enumerated(_traces(model, X), empty)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_nothing_enumerated(_traces(mixture, X), empty)


def test_svi_init_with_traceenum_and_nothing_enumerated_warns():
    import optax

    def guide(x):
        jsvi.sample("mu", dist.Normal(jsvi.param("m", 0.0), 1.0))

    svi = jsvi.SVI(model, guide, optax.adam(0.1), jsvi.TraceEnum_ELBO())
    with pytest.warns(EnumerationWarning, match="TraceEnum_ELBO: no sample site is marked"):
        jsvi.svi_init(svi, 0, X)
