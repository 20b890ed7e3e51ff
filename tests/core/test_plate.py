"""Plates: dims, nesting, broadcasting, subsampling, sequential iteration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.errors import ArgumentError, ShapeError


def get_trace(fn, *args, key=0):
    return handlers.trace(handlers.seed(fn, rng_key=key)).get_trace(*args)


def test_auto_dims_nest_from_the_right_and_broadcast():
    def f():
        with jsvi.plate("outer", 3):
            with jsvi.plate("inner", 4):
                jsvi.sample("z", dist.Normal(0.0, 1.0))
                jsvi.sample("y", dist.Normal(jnp.zeros((4, 1)), 1.0))

    # As in Pyro: the first plate entered takes dim -1, the next one -2.
    tr = get_trace(f)
    assert tr["z"].fn.batch_shape == (4, 3)
    assert tr["z"].value.shape == (4, 3)
    assert tr["y"].fn.batch_shape == (4, 3)
    frames = {fr.name: fr.dim for fr in tr["z"].cond_indep_stack}
    assert frames == {"outer": -1, "inner": -2}


def test_plates_expand_sites_without_broadcasting_parameters():
    loc = jnp.array([0.0, 1.0, 2.0])

    def f():
        with jsvi.plate("outer", 3), jsvi.plate("inner", 4):
            jsvi.sample("z", dist.Normal(loc, 2.0))
            jsvi.sample("c", dist.Categorical(jnp.array([0.2, 0.8])))

    tr = get_trace(f)
    z, c = tr["z"].fn, tr["c"].fn
    assert isinstance(z, dist.ExpandedDistribution)
    assert (z.batch_shape, z.base_dist.loc.shape) == ((4, 3), (1, 3))
    assert (c.batch_shape, c.base_dist.probs.shape) == ((4, 3), (1, 1, 2))
    eager = dist.Normal(loc, 2.0).expand((4, 3))
    key = jax.random.key(1)
    np.testing.assert_array_equal(z.sample(key), eager.sample(key))
    np.testing.assert_allclose(
        z.log_prob(tr["z"].value), eager.log_prob(tr["z"].value), rtol=1e-6
    )
    assert c.log_prob(tr["c"].value).shape == (4, 3)


def test_explicit_dim_and_conflict():
    def f():
        with jsvi.plate("a", 2, dim=-2):
            with jsvi.plate("b", 5):
                jsvi.sample("z", dist.Normal(0.0, 1.0))

    assert get_trace(f)["z"].fn.batch_shape == (2, 5)

    def clash():
        with jsvi.plate("a", 2, dim=-1):
            with jsvi.plate("b", 5, dim=-1):
                jsvi.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ShapeError, match="dim -1 is already used by the enclosing plate 'a'"):
        get_trace(clash)


def test_batch_shape_that_does_not_fit_the_plate():
    def f():
        with jsvi.plate("data", 5):
            jsvi.sample("z", dist.Normal(jnp.zeros(3), 1.0))

    with pytest.raises(ShapeError, match=r"sample site 'z'.*size 3 at dim -1.*plate 'data' has size 5"):
        get_trace(f)


def test_obs_shape_disagreeing_with_plate():
    def f(x):
        with jsvi.plate("data", 5):
            jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x)

    with pytest.raises(ShapeError, match=r"sample site 'x': obs has shape \(10,\)"):
        get_trace(f, jnp.zeros(10))
    with pytest.raises(ShapeError, match=r"sample site 'x': obs batch shape \(5, 1\)"):
        get_trace(f, jnp.zeros((5, 1)))


def test_subsample_scales_log_density_and_indices_are_distinct():
    data = jnp.arange(100.0)

    def f():
        with jsvi.plate("data", 100, subsample_size=10) as idx:
            jsvi.sample("x", dist.Normal(0.0, 1.0), obs=data[idx])
        return idx

    tr = get_trace(f, key=3)
    idx = np.asarray(tr["data"].value)
    assert idx.shape == (10,) and len(set(idx.tolist())) == 10
    assert tr["x"].scale == pytest.approx(10.0)
    expected = 10.0 * dist.Normal(0.0, 1.0).log_prob(data[idx]).sum()
    np.testing.assert_allclose(tr.log_prob_sum(), expected, rtol=1e-6)
    assert not np.array_equal(idx, np.asarray(get_trace(f, key=4)["data"].value))


def test_user_subsample_indices():
    def f():
        with jsvi.plate("data", 50, subsample=jnp.array([1, 3, 5])) as idx:
            jsvi.sample("z", dist.Normal(0.0, 1.0))
        return idx

    tr = get_trace(f)
    np.testing.assert_array_equal(tr["data"].value, [1, 3, 5])
    assert tr["z"].fn.batch_shape == (3,)
    assert tr["z"].scale == pytest.approx(50 / 3)


def test_guide_subsample_indices_are_replayed_into_model():
    def guide():
        with jsvi.plate("data", 100, subsample_size=7):
            jsvi.sample("z", dist.Normal(0.0, 1.0))

    def model():
        with jsvi.plate("data", 100, subsample_size=7) as idx:
            jsvi.sample("z", dist.Normal(0.0, 1.0))
        return idx

    g = get_trace(guide, key=1)
    m = handlers.trace(handlers.replay(handlers.seed(model, rng_key=2), trace=g)).get_trace()
    np.testing.assert_array_equal(m["data"].value, g["data"].value)


def test_same_plate_entered_twice_reuses_indices():
    def f():
        p = jsvi.plate("data", 100, subsample_size=5)
        with p as i1:
            jsvi.sample("a", dist.Normal(0.0, 1.0))
        with p as i2:
            jsvi.sample("b", dist.Normal(0.0, 1.0))
        with jsvi.plate("data", 100, subsample_size=5) as i3:
            jsvi.sample("c", dist.Normal(0.0, 1.0))
        return i1, i2, i3

    i1, i2, i3 = handlers.trace(handlers.seed(f, rng_key=0))()
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(i1, i3)


def test_sequential_plate():
    def f():
        out = []
        for i in jsvi.plate("seq", 3):
            out.append(jsvi.sample(f"z_{i}", dist.Normal(0.0, 1.0)))
        return out

    tr = get_trace(f)
    assert [n for n in tr if n.startswith("z_")] == ["z_0", "z_1", "z_2"]
    frames = [tr[f"z_{i}"].cond_indep_stack for i in range(3)]
    assert [fr[0].counter for fr in frames] == [0, 1, 2]
    assert all(fr[0].dim is None for fr in frames)


def test_sequential_plate_with_subsample_scales():
    def f():
        for i in jsvi.plate("seq", 10, subsample_size=2):
            jsvi.sample(f"z_{i}", dist.Normal(0.0, 1.0))

    tr = get_trace(f)
    sites = tr.sample_sites()
    assert len(sites) == 2
    assert all(s.scale == pytest.approx(5.0) for s in sites.values())


def test_plate_argument_errors():
    with pytest.raises(ArgumentError, match="subsample_size must be in"):
        jsvi.plate("p", 3, subsample_size=5)
    with pytest.raises(ArgumentError, match="dim must be a negative int"):
        jsvi.plate("p", 3, dim=1)
    with pytest.raises(ArgumentError, match="size must be a concrete int"):
        jax.jit(lambda n: jsvi.plate("p", n))(3)


def test_plate_works_under_jit_and_vmap():
    def f(key, x):
        def m():
            with jsvi.plate("data", x.shape[0], subsample_size=2) as idx:
                jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x[idx])
        return handlers.trace(handlers.seed(m, rng_key=key)).get_trace().log_prob_sum()

    x = jnp.arange(6.0)
    keys = jax.random.split(jax.random.key(0), 4)
    out = jax.jit(jax.vmap(f, in_axes=(0, None)))(keys, x)
    assert out.shape == (4,)
    assert np.all(np.isfinite(out))
