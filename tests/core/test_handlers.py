"""Effect handlers: wrappers and context managers, composition, clean stack."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.core.runtime import stack_is_empty
from jsvi.errors import ArgumentError, MissingRNGKeyError, SiteError


def model(x=None):
    z = jsvi.sample("z", dist.Normal(0.0, 1.0))
    w = jsvi.param("w", 2.0)
    jsvi.sample("x", dist.Normal(z * w, 1.0), obs=x)
    jsvi.deterministic("zw", z * w)
    return z


def test_seed_is_deterministic_and_key_types_agree():
    a = handlers.seed(model, rng_key=jax.random.key(3))()
    b = handlers.seed(model, rng_key=jax.random.key(3))()
    c = handlers.seed(model, rng_key=3)()
    d = handlers.seed(model, rng_key=jax.random.PRNGKey(3))()
    assert a == b == c == d
    assert a != handlers.seed(model, rng_key=4)()


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_seed_gives_each_site_its_own_independent_key(impl):
    # Site keys are distinct from each other and from the parent, and the draws
    # they give are uncorrelated: 64 sites x 2,000 standard normals each. A
    # sample correlation has sd 1/sqrt(2000) = 0.022; the largest of the 2,016
    # pairs should sit near 4 sd (0.09), and 0.12 is 5.4 sd (chance ~2e-4).
    from jsvi.core.handlers import _site_key

    key = jax.random.key(11, impl=impl)
    keys = [_site_key(key, i) for i in range(64)]
    data = {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in keys}
    assert len(data | {tuple(np.asarray(jax.random.key_data(key)).tolist())}) == 65

    def many():
        return jnp.stack([jsvi.sample(f"z{i}", dist.Normal(jnp.zeros(2000), 1.0)) for i in range(64)])

    z = np.asarray(handlers.seed(many, rng_key=key)())
    corr = np.corrcoef(z)
    off = corr[~np.eye(64, dtype=bool)]
    assert np.abs(off).max() < 0.12
    # and uncorrelated with a draw from the parent key itself
    parent = np.asarray(jax.random.normal(key, (2000,)))
    assert np.abs([np.corrcoef(parent, row)[0, 1] for row in z]).max() < 0.12


def test_seed_handler_reused_gives_same_trace():
    seeded = handlers.seed(model, rng_key=0)
    assert seeded() == seeded()


def test_seed_as_context_manager():
    with handlers.seed(rng_key=5):
        z = model()
    assert z == handlers.seed(model, rng_key=5)()


def test_trace_records_sites_in_order_with_pyro_keys():
    tr = handlers.trace(handlers.seed(model, rng_key=0)).get_trace(1.0)
    assert list(tr) == ["z", "w", "x", "zw"]
    assert [tr[n]["type"] for n in tr] == ["sample", "param", "sample", "deterministic"]
    site = tr["x"]
    for key in ("type", "name", "fn", "value", "is_observed", "infer", "scale", "mask",
                "cond_indep_stack"):
        assert key in site
    assert site["is_observed"] and not tr["z"]["is_observed"]
    assert tr.nodes is tr
    assert float(tr["w"].value) == 2.0


def test_trace_as_context_manager_binds_trace():
    with handlers.trace() as tr, handlers.seed(rng_key=0):
        model(1.0)
    assert set(tr) == {"z", "w", "x", "zw"}


def test_log_prob_sum_is_sum_of_site_log_probs():
    tr = handlers.trace(handlers.seed(model, rng_key=1)).get_trace(0.5)
    z = tr["z"].value
    expected = dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(2.0 * z, 1.0).log_prob(0.5)
    np.testing.assert_allclose(tr.log_prob_sum(), expected, rtol=1e-6)


def test_replay_reuses_latent_values_not_observations():
    tr = handlers.trace(handlers.seed(model, rng_key=1)).get_trace(0.5)
    tr2 = handlers.trace(handlers.replay(handlers.seed(model, rng_key=9), trace=tr)).get_trace(0.7)
    assert tr2["z"].value == tr["z"].value
    assert float(tr2["x"].value) == pytest.approx(0.7)


def test_substitute_and_condition():
    sub = handlers.substitute(handlers.seed(model, rng_key=0), data={"w": 5.0, "z": 1.0})
    tr = handlers.trace(sub).get_trace(0.0)
    assert float(tr["zw"].value) == 5.0
    assert not tr["z"].is_observed
    cond = handlers.condition(model, data={"z": 0.25})
    tr = handlers.trace(cond).get_trace(0.0)  # no seed needed: nothing is drawn
    assert tr["z"].is_observed and float(tr["z"].value) == 0.25


def test_block_hides_sites_from_outer_handlers():
    tr = handlers.trace(handlers.block(handlers.seed(model, rng_key=0), hide=["z"])).get_trace(0.0)
    assert "z" not in tr and "x" in tr
    tr = handlers.trace(handlers.block(handlers.seed(model, rng_key=0), expose=["w"])).get_trace(0.0)
    assert list(tr) == ["w"]


def test_scale_and_mask_apply_to_log_prob_sum():
    base = handlers.trace(handlers.seed(model, rng_key=2)).get_trace(0.3)
    scaled = handlers.trace(handlers.scale(handlers.seed(model, rng_key=2), factor=3.0)).get_trace(0.3)
    np.testing.assert_allclose(scaled.log_prob_sum(), 3 * base.log_prob_sum(), rtol=1e-6)
    masked = handlers.trace(handlers.mask(handlers.seed(model, rng_key=2), mask=False)).get_trace(0.3)
    assert float(masked.log_prob_sum()) == 0.0


def test_handlers_compose_in_either_order():
    a = handlers.trace(handlers.scale(handlers.seed(model, rng_key=2), factor=2.0)).get_trace(0.3)
    b = handlers.trace(handlers.seed(handlers.scale(model, factor=2.0), rng_key=2)).get_trace(0.3)
    np.testing.assert_allclose(a.log_prob_sum(), b.log_prob_sum(), rtol=1e-6)


def test_stack_is_clean_after_model_raises():
    def bad():
        jsvi.sample("z", dist.Normal(0.0, 1.0))
        with jsvi.plate("p", 3):
            for _ in jsvi.plate("q", 2):
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        handlers.trace(handlers.seed(bad, rng_key=0)).get_trace()
    assert stack_is_empty()


def test_missing_rng_key_error_names_site_and_fix():
    with pytest.raises(MissingRNGKeyError, match=r"sample site 'z'.*handlers\.seed"):
        model(0.0)


def test_duplicate_site_name_is_an_error():
    def twice():
        jsvi.sample("a", dist.Normal(0.0, 1.0))
        jsvi.sample("a", dist.Normal(0.0, 1.0))

    with pytest.raises(SiteError, match=r"'a'.*already used"):
        handlers.trace(handlers.seed(twice, rng_key=0)).get_trace()


def test_param_outside_handlers_returns_init_and_factor_adds_density():
    assert float(jsvi.param("p", 3.0)) == 3.0

    def f():
        jsvi.factor("f", jnp.array([1.0, 2.0]))

    assert float(handlers.trace(f).get_trace().log_prob_sum()) == 3.0


def test_callable_param_init_gets_a_key():
    def f():
        return jsvi.param("w", lambda key: jax.random.normal(key, (3,)))

    w = handlers.seed(f, rng_key=0)()
    assert w.shape == (3,)
    with pytest.raises(MissingRNGKeyError, match="param site 'w'"):
        f()


def test_bad_handler_arguments():
    with pytest.raises(ArgumentError, match="seed: rng_key"):
        handlers.seed(model)
    with pytest.raises(ArgumentError, match="seed: rng_key must be"):
        handlers.seed(model, rng_key="zero")
    with pytest.raises(ArgumentError, match="scale: factor must be positive"):
        handlers.scale(model, factor=0.0)
    with pytest.raises(ArgumentError, match="mask: mask must be a bool"):
        handlers.mask(model, mask=jnp.ones(3))


def test_config_enumerate_marks_discrete_sites():
    def f():
        jsvi.sample("c", dist.Bernoulli(0.3))
        jsvi.sample("n", dist.Normal(0.0, 1.0))

    tr = handlers.trace(handlers.seed(jsvi.config_enumerate(f), rng_key=0)).get_trace()
    assert tr["c"].infer == {"enumerate": "parallel"}
    assert tr["n"].infer == {}


def test_format_shapes_lists_sites():
    tr = handlers.trace(handlers.seed(model, rng_key=0)).get_trace(0.0)
    table = jsvi.format_shapes(tr)
    assert "z" in table and "pathwise" in table and "param" in table
    assert tr.format_shapes() == table
