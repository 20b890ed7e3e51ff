"""``svi_update`` is one pure compiled step: standard JAX idioms (donation,
pickling, threads, ``jax.distributed``) work, nothing outlives the ``SVI`` that
owns it, and ``svi_run`` counts steps one way."""

from __future__ import annotations

import copy
import gc
import multiprocessing
import pickle
import subprocess
import sys
import textwrap
import threading
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.errors import NonFiniteError

DATA = jnp.array([1.0] * 6 + [0.0] * 4)


def coin_model(data):
    f = jsvi.sample("f", dist.Beta(10.0, 10.0))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("obs", dist.Bernoulli(f), obs=data)


def coin_guide(data):
    del data
    a = jsvi.param("a", 15.0, constraint=constraints.positive)
    b = jsvi.param("b", 15.0, constraint=constraints.positive)
    jsvi.sample("f", dist.Beta(a, b))


def coin_svi(lr: float = 0.01) -> jsvi.SVI:
    return jsvi.SVI(coin_model, coin_guide, optax.adam(lr), jsvi.Trace_ELBO())


def normal_model(x):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=x)


def normal_guide(x):
    del x
    jsvi.sample("mu", dist.Normal(jsvi.param("m", 0.0), 1.0))


def _steps(svi, state, n, *args):
    losses = []
    for _ in range(n):
        state, loss = jsvi.svi_update(svi, state, *args)
        losses.append(float(loss))
    return state, losses


def test_donating_the_state_leaves_other_states_and_svis_intact():
    svi = coin_svi()
    donating = jax.jit(lambda s, x: jsvi.svi_update(svi, s, x), donate_argnums=0)
    state = jsvi.svi_init(svi, 0, DATA)
    for _ in range(3):
        state, _ = donating(state, DATA)
    # a fresh state of the same SVI, and a different SVI, both still work
    fresh = jsvi.svi_init(svi, 1, DATA)
    jsvi.svi_update(svi, fresh, DATA)
    other = jsvi.SVI(normal_model, normal_guide, optax.sgd(0.1), jsvi.Trace_ELBO())
    final, losses = jsvi.svi_run(other, 0, 5, jnp.ones(3), progress_bar=False)
    assert np.all(np.isfinite(np.asarray(losses)))
    assert int(final.step) == 5


_FRESH_PROCESS = textwrap.dedent(
    """
    import socket
    import jax
    import jsvi
    from jax._src import xla_bridge
    assert not xla_bridge._backends, "import jsvi started a backend"
    jax.config.update("jax_num_cpu_devices", 4)
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]
    sock.close()
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=1, process_id=0,
        initialization_timeout=30,
    )
    print(jax.process_count(), len(jax.devices()))
    jax.distributed.shutdown()
    """
)


def test_import_starts_no_backend_so_distributed_and_device_count_can_be_set():
    out = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "4"]


def _weak_model_after_use(kind: str) -> weakref.ref:
    big = jnp.ones(1000)

    def model(x):
        mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", dist.Normal(mu + 0.0 * big.sum(), 1.0), obs=x)

    svi = jsvi.SVI(model, normal_guide, optax.sgd(0.1), jsvi.Trace_ELBO())
    x = jnp.ones(4)
    state = jsvi.svi_init(svi, 0, x)
    if kind == "update":
        jsvi.svi_update(svi, state, x)
        jsvi.evaluate_loss(svi, state, x)
    elif kind == "run":
        jsvi.svi_run(svi, 0, 3, x, progress_bar=False)
    elif kind == "predictive":
        jsvi.Predictive(model, normal_guide, params=jsvi.get_params(svi, state), num_samples=2)(
            jax.random.key(0), x
        )
    return weakref.ref(model)


@pytest.mark.parametrize("kind", ["update", "run", "predictive"])
def test_a_dropped_model_is_freed_without_clearing_jax_caches(kind):
    ref = _weak_model_after_use(kind)
    gc.collect()
    assert ref() is None


def test_many_static_arguments_grow_nothing_but_the_svis_own_jit_cache():
    def model(n):
        mu = jsvi.param("mu", 0.0)
        jsvi.factor("f", -0.5 * n * mu**2)

    svi = jsvi.SVI(model, lambda n: None, optax.sgd(0.1), jsvi.Trace_ELBO(), validate=False)
    before = dict(vars(svi))
    state = jsvi.svi_init(svi, 0, 1)
    for n in range(1, 201):
        state, _ = jsvi.svi_update(svi, state, n)
    # The SVI holds its configuration and its jitted functions, nothing more; the
    # compiled programs are in jax.jit's own (LRU-bounded) cache of that function.
    assert vars(svi).keys() == before.keys()
    assert all(vars(svi)[k] is before[k] for k in before)
    assert svi.compiled.update._cache_size() == 200
    ref = weakref.ref(model)
    del svi, model, state, before
    gc.collect()
    assert ref() is None


def test_an_array_bounded_interval_param_trains_inside_its_bounds():
    low, high = jnp.array([0.0, -1.0, 2.0]), jnp.array([1.0, 0.0, 5.0])
    target = jnp.array([3.0, -3.0, 3.0])  # outside the first two intervals

    def model():
        w = jsvi.param("w", (low + high) / 2, constraint=constraints.interval(low, high))
        jsvi.factor("fit", -jnp.sum((w - target) ** 2))

    svi = jsvi.SVI(model, lambda: None, optax.adam(0.1), jsvi.Trace_ELBO())
    state, losses = jsvi.svi_run(svi, 0, 300, progress_bar=False)
    w = np.asarray(jsvi.get_params(svi, state)["w"])
    assert np.all(w >= np.asarray(low)) and np.all(w <= np.asarray(high))
    # the unconstrained optimum pushes the first two to their bounds, the third to 3
    np.testing.assert_allclose(w, [1.0, -1.0, 3.0], atol=2e-2)
    again = pickle.loads(pickle.dumps(state))
    np.testing.assert_array_equal(jsvi.get_params(svi, again)["w"], w)
    assert again.param_constraints == state.param_constraints


def _final_params_of(state_bytes: bytes) -> dict:
    svi = coin_svi()
    state = pickle.loads(state_bytes)
    state, _ = _steps(svi, state, 3, DATA)
    return {k: np.asarray(v) for k, v in jsvi.get_params(svi, state).items()}


def test_state_pickles_deepcopies_and_crosses_a_spawned_process():
    svi = coin_svi()
    state = jsvi.svi_init(svi, 0, DATA)
    state, _ = _steps(svi, state, 2, DATA)
    for copied in (pickle.loads(pickle.dumps(state)), copy.deepcopy(state)):
        assert jax.tree.structure(copied) == jax.tree.structure(state)
        for a, b in zip(jax.tree.leaves(copied), jax.tree.leaves(state)):
            np.testing.assert_array_equal(
                jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a,
                jax.random.key_data(b) if jnp.issubdtype(b.dtype, jax.dtypes.prng_key) else b,
            )
    here, _ = _steps(svi, state, 3, DATA)
    expected = jsvi.get_params(svi, here)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.apply(_final_params_of, (pickle.dumps(state),))
    for name, value in expected.items():
        np.testing.assert_array_equal(there[name], value)
    # a copy of the configuration is equal to it and has compiled functions of its own
    twin = copy.deepcopy(svi)
    assert twin == svi and twin.compiled is not svi.compiled
    np.testing.assert_array_equal(
        jsvi.svi_update(twin, state, DATA)[1], jsvi.svi_update(svi, state, DATA)[1]
    )


def spiky_model():
    x = jsvi.sample("x", dist.Normal(0.0, 1.0))
    # the density is NaN for draws above 1.2 (about one step in nine): those
    # steps are rejected
    jsvi.factor("spike", jnp.where(x > 1.2, jnp.nan, 0.0))


def spiky_guide():
    jsvi.sample("x", dist.Normal(jsvi.param("m", 0.0), 1.0))


def test_checkpoint_cadence_and_resume_count_tried_steps_with_rejections(tmp_path, monkeypatch):
    svi = jsvi.SVI(spiky_model, spiky_guide, optax.sgd(1e-3), jsvi.Trace_ELBO())
    path = tmp_path / "run.ckpt"
    saved: list[int] = []
    real_save = jsvi.loop.save_state

    def recording_save(p, state):
        saved.append(int(state.step) + int(state.num_rejected))
        real_save(p, state)

    monkeypatch.setattr(jsvi.loop, "save_state", recording_save)
    full, _ = jsvi.svi_run(
        svi, 0, 200, progress_bar=False, checkpoint_every=20, checkpoint_path=path
    )
    assert int(full.num_rejected) > 5  # the test needs rejections to mean anything
    assert int(full.step) + int(full.num_rejected) == 200
    assert saved == list(range(20, 201, 20))

    # A run killed after its third checkpoint, started again with the same
    # arguments, resumes from the file and ends bit for bit where `full` did.
    path.unlink()
    saved.clear()

    def dying_save(p, state):
        recording_save(p, state)
        if len(saved) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(jsvi.loop, "save_state", dying_save)
    with pytest.raises(KeyboardInterrupt):
        jsvi.svi_run(svi, 0, 200, progress_bar=False, checkpoint_every=20, checkpoint_path=path)
    monkeypatch.setattr(jsvi.loop, "save_state", recording_save)
    resumed, losses = jsvi.svi_run(
        svi, 0, 200, progress_bar=False, checkpoint_every=20, checkpoint_path=path
    )
    assert saved == [20, 40, 60, *range(80, 201, 20)]
    assert losses.shape == (140,)
    assert int(resumed.step) == int(full.step)
    assert int(resumed.num_rejected) == int(full.num_rejected)
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(full.params)):
        np.testing.assert_array_equal(a, b)


def test_rejections_do_not_depend_on_how_the_run_is_chunked(tmp_path):
    # The first rejection is found after a chunk by bisection, later steps are
    # each checked: one chunk, chunks of 7 and chunks of 1 give the same run,
    # bit for bit, with the same steps rejected.
    svi = jsvi.SVI(spiky_model, spiky_guide, optax.sgd(1e-3), jsvi.Trace_ELBO())
    runs = [
        jsvi.svi_run(svi, 0, 60, progress_bar=False),
        jsvi.svi_run(svi, 0, 60, progress_bar=False, checkpoint_every=7,
                     checkpoint_path=tmp_path / "a.ckpt"),
        jsvi.svi_run(svi, 0, 60, progress_bar=False, checkpoint_every=1,
                     checkpoint_path=tmp_path / "b.ckpt"),
    ]
    first, losses = runs[0]
    assert int(first.num_rejected) > 3
    # rejected steps report their loss as it was: NaN for this model
    assert int(np.sum(np.isnan(losses))) == int(first.num_rejected)
    for state, other in runs[1:]:
        np.testing.assert_array_equal(other, losses)
        assert int(state.num_rejected) == int(first.num_rejected)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(first.params)):
            np.testing.assert_array_equal(a, b)


def test_a_state_broken_without_a_nonfinite_loss_is_traced_to_its_step():
    # "u" does not enter the loss; the optimizer makes it NaN at its 14th update.
    # Every loss stays finite, so the run's bisection must find step 13 from the
    # final state alone; from then on each step is checked and rejected.
    def breaking():
        def init(params):
            return jnp.zeros((), jnp.int32)

        def update(grads, count, params=None):
            upd = {"mu": -0.1 * grads["mu"], "u": jnp.where(count == 13, jnp.nan, 0.0) + grads["u"]}
            return upd, jnp.minimum(count + 1, 13)

        return optax.GradientTransformation(init, update)

    def model():
        mu = jsvi.param("mu", 0.0)
        jsvi.param("u", 0.0)
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=1.0)

    svi = jsvi.SVI(model, lambda: None, breaking(), jsvi.Trace_ELBO())
    state, losses = jsvi.svi_run(svi, 0, 50, progress_bar=False, max_nonfinite=100)
    assert (int(state.step), int(state.num_rejected)) == (13, 37)
    assert np.all(np.isfinite(losses)) and np.isfinite(float(state.params["u"]))
    # the loss at the kept state, reported by every rejected step
    np.testing.assert_array_equal(losses[13:], np.full(37, losses[13]))


def test_threads_each_with_their_own_state_match_sequential_runs():
    svi = coin_svi()
    seeds = [0, 1, 2, 3]
    sequential = {}
    for seed in seeds:
        state, losses = _steps(svi, jsvi.svi_init(svi, seed, DATA), 20, DATA)
        sequential[seed] = (losses, jsvi.get_params(svi, state))

    results: dict[int, tuple] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(seeds))

    def work(seed: int) -> None:
        try:
            barrier.wait()
            state, losses = _steps(svi, jsvi.svi_init(svi, seed, DATA), 20, DATA)
            results[seed] = (losses, jsvi.get_params(svi, state))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for seed in seeds:
        assert results[seed][0] == sequential[seed][0]
        for name, value in sequential[seed][1].items():
            np.testing.assert_array_equal(results[seed][1][name], value)


def test_optimizers_with_extra_arguments_get_the_loss():
    def model():
        mu = jsvi.param("mu", 5.0)
        jsvi.factor("f", -0.5 * mu**2)

    opt = optax.chain(optax.sgd(0.5), optax.contrib.reduce_on_plateau(patience=2))
    svi = jsvi.SVI(model, lambda: None, opt, jsvi.Trace_ELBO())
    state, losses = jsvi.svi_run(svi, 0, 30, progress_bar=False)
    assert float(losses[-1]) < float(losses[0])
    state, loss = jsvi.svi_update(svi, state)
    assert np.isfinite(float(loss))


def test_an_update_that_breaks_params_from_finite_gradients_is_rejected_and_named():
    # An optimizer whose update is itself non-finite (here: from the third step
    # on) leaves finite gradients; the steps it would break are rejected all the
    # same, and the error after max_nonfinite of them names the param.
    def breaking():
        def init(params):
            return jnp.zeros((), jnp.int32)

        def update(grads, count, params=None):
            bad = jnp.where(count >= 2, jnp.nan, 0.0)
            return jax.tree.map(lambda g: -0.1 * g + bad, grads), count + 1

        return optax.GradientTransformation(init, update)

    def model():
        mu = jsvi.param("mu", 0.0)
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=1.0)

    svi = jsvi.SVI(model, lambda: None, breaking(), jsvi.Trace_ELBO())
    state, losses = jsvi.svi_run(svi, 0, 4, progress_bar=False)
    assert (int(state.step), int(state.num_rejected)) == (2, 2)
    assert np.isfinite(float(state.params["mu"])) and np.all(np.isfinite(losses))
    with pytest.raises(NonFiniteError, match="3 consecutive.*update makes non-finite: mu"):
        jsvi.svi_run(svi, 0, 10, progress_bar=False, max_nonfinite=3)
    with pytest.warns(jsvi.errors.JsviWarning, match="skip_nonfinite=False.*mu"):
        state, _ = jsvi.svi_run(svi, 0, 4, progress_bar=False, skip_nonfinite=False)
    assert not np.isfinite(float(state.params["mu"]))
