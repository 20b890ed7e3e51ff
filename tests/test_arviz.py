"""to_arviz: draws become an ArviZ InferenceData with the right groups and shapes."""

from __future__ import annotations

import importlib.util
import sys

import jax
import numpy as np
import pytest

from jsvi.arviz import to_arviz
from jsvi.autoguide import AutoNormal
from jsvi.errors import ArgumentError, ShapeError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("arviz") is None, reason="arviz is not installed"
)


def test_groups_shapes_and_chains():
    rng = np.random.default_rng(0)
    samples = {"mu": rng.normal(size=(400,)), "w": rng.normal(size=(400, 3))}
    idata = to_arviz(
        samples,
        posterior_predictive={"y": rng.normal(size=(400, 5))},
        observed_data={"y": np.zeros(5)},
        num_chains=2,
    )
    assert idata.posterior["mu"].shape == (2, 200)
    assert idata.posterior["w"].shape == (2, 200, 3)
    assert idata.posterior_predictive["y"].shape == (2, 200, 5)
    assert idata.observed_data["y"].shape == (5,)
    # Chain-major: the first 200 draws are chain 0.
    np.testing.assert_array_equal(idata.posterior["w"].values[1], samples["w"][200:])


def test_guide_draws_round_trip_with_named_dims():
    import jax.numpy as jnp  # noqa: PLC0415

    import jsvi  # noqa: PLC0415
    import jsvi.distributions as dist  # noqa: PLC0415

    def model():
        jsvi.sample("w", dist.Normal(jnp.zeros(3), 1.0).to_event(1))

    guide = AutoNormal(model)
    params = {"w_auto_loc": jnp.array([1.0, 2.0, 3.0]), "w_auto_scale": jnp.ones(3)}
    draws = guide.sample_posterior(jax.random.key(0), params, sample_shape=(100,))
    idata = to_arviz(draws, coords={"coef": ["a", "b", "c"]}, dims={"w": ["coef"]})
    assert list(idata.posterior["w"].coords["coef"].values) == ["a", "b", "c"]
    np.testing.assert_array_equal(
        idata.posterior["w"].values[0], np.asarray(draws["w"])
    )


def test_bad_input_is_reported(monkeypatch):
    with pytest.raises(ShapeError, match="'mu'.*num_chains=3"):
        to_arviz({"mu": np.zeros(10)}, num_chains=3)
    with pytest.raises(ShapeError, match="'mu'"):
        to_arviz({"mu": np.float32(1.0)})
    with pytest.raises(ArgumentError, match="non-empty dict"):
        to_arviz({})
    with pytest.raises(ArgumentError, match="num_chains"):
        to_arviz({"mu": np.zeros(10)}, num_chains=0)

    # A None entry in sys.modules makes the import fail, as without arviz.
    monkeypatch.setitem(sys.modules, "arviz", None)
    with pytest.raises(ArgumentError, match="pip install arviz"):
        to_arviz({"mu": np.zeros(10)})
