"""Checkpoints: bit-exact, atomic, pickle-free, and loud about bad files."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.errors import CheckpointError

DATA = jnp.array([1.0] * 6 + [0.0] * 4)


def model(data):
    f = jsvi.sample("f", dist.Beta(10.0, 10.0))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("obs", dist.Bernoulli(f), obs=data)


def guide(data):
    del data
    a = jsvi.param("a", 15.0, constraint=constraints.positive)
    b = jsvi.param("b", 15.0, constraint=constraints.positive)
    jsvi.sample("f", dist.NonReparameterized(dist.Beta(a, b)),
                infer={"baseline": {"use_decaying_avg_baseline": True}})


SVI = jsvi.SVI(model, guide, optax.adam(1e-2), jsvi.TraceGraph_ELBO())


def assert_states_identical(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_is_bit_exact_with_any_extension(tmp_path):
    state, _ = jsvi.svi_run(SVI, 0, 7, DATA, progress_bar=False)
    path = tmp_path / "state.anything"
    jsvi.save_state(path, state)
    assert path.exists() and sorted(os.listdir(tmp_path)) == ["state.anything"]
    loaded = jsvi.load_state(path, like=jsvi.svi_init(SVI, 1, DATA))
    assert_states_identical(loaded, state)
    assert int(loaded.step) == 7 and "f" in loaded.elbo_state
    # the loaded state continues exactly like the original
    assert_states_identical(jsvi.svi_update(SVI, loaded, DATA), jsvi.svi_update(SVI, state, DATA))


def _rewrite_header(path, edit):
    """Rewrite a checkpoint's JSON header with ``edit(text) -> text``."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = edit(arrays.pop("__header__").tobytes().decode())
    with open(path, "wb") as f:
        np.savez(f, __header__=np.frombuffer(header.encode(), dtype=np.uint8), **arrays)


def test_headers_with_the_older_private_constraint_class_names_still_load(tmp_path):
    """Files written when the classes were ``jsvi.constraints._Positive`` load into a
    state whose classes are ``jsvi.constraints.Positive``; another class is refused."""
    state, _ = jsvi.svi_run(SVI, 0, 3, DATA, progress_bar=False)
    like = jsvi.svi_init(SVI, 1, DATA)
    path = tmp_path / "old.ckpt"
    jsvi.save_state(path, state)
    _rewrite_header(path, lambda h: h.replace('"jsvi.constraints.Positive"', '"jsvi.constraints._Positive"'))
    assert "jsvi.constraints._Positive" in np.load(path)["__header__"].tobytes().decode()
    assert_states_identical(jsvi.load_state(path, like=like), state)
    _rewrite_header(path, lambda h: h.replace('"jsvi.constraints._Positive"', '"jsvi.constraints._Real"'))
    with pytest.raises(CheckpointError, match="constraint"):
        jsvi.load_state(path, like=like)


def test_crash_mid_write_leaves_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    good = jsvi.svi_init(SVI, 0, DATA)
    jsvi.save_state(path, good)

    def boom(f, **arrays):
        f.write(b"partial garbage")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        jsvi.save_state(path, jsvi.svi_update(SVI, good, DATA)[0])
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temp file left behind
    assert_states_identical(jsvi.load_state(path, like=good), good)


def test_truncated_or_corrupted_file_is_a_clear_error(tmp_path):
    path = tmp_path / "ckpt"
    state = jsvi.svi_init(SVI, 0, DATA)
    jsvi.save_state(path, state)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        jsvi.load_state(path, like=state)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        jsvi.load_state(path, like=state)
    with pytest.raises(CheckpointError, match="no such file"):
        jsvi.load_state(tmp_path / "missing", like=state)


def test_pickled_content_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    with open(path, "wb") as f:
        np.savez(f, __header__=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError):
        jsvi.load_state(path, like={"w": jnp.zeros(3)})


def test_other_model_or_other_shapes_are_refused(tmp_path):
    path = tmp_path / "ckpt"
    jsvi.save_state(path, jsvi.svi_init(SVI, 0, DATA))

    def other_guide(data):
        del data
        jsvi.param("loc", 0.0)
        jsvi.sample("f", dist.Beta(2.0, 2.0))

    other = jsvi.SVI(model, other_guide, optax.adam(1e-2), jsvi.Trace_ELBO())
    with pytest.raises(CheckpointError, match="different state structure"):
        jsvi.load_state(path, like=jsvi.svi_init(other, 0, DATA))
    jsvi.save_state(path, {"w": jnp.zeros(3)})
    with pytest.raises(CheckpointError, match=r"shape \(3,\).*but \(4,\)"):
        jsvi.load_state(path, like={"w": jnp.zeros(4)})


def test_svi_run_checkpoints_and_resumes_bit_identically(tmp_path):
    path = tmp_path / "run.ckpt"
    full_state, full_losses = jsvi.svi_run(SVI, 0, 50, DATA, progress_bar=False)
    part_state, part_losses = jsvi.svi_run(
        SVI, 0, 20, DATA, progress_bar=False, checkpoint_every=10, checkpoint_path=path
    )
    assert int(jsvi.load_state(path, like=part_state).step) == 20
    resumed, resumed_losses = jsvi.svi_run(
        SVI, 0, 50, DATA, progress_bar=False, checkpoint_every=10, checkpoint_path=path
    )
    assert int(resumed.step) == 50 and resumed_losses.shape == (30,)
    np.testing.assert_array_equal(np.asarray(part_losses), np.asarray(full_losses[:20]))
    np.testing.assert_array_equal(np.asarray(resumed_losses), np.asarray(full_losses[20:]))
    assert_states_identical(resumed, full_state)


CHILD = textwrap.dedent(
    """
    import sys, time
    import jax, jax.numpy as jnp, optax
    import jsvi, jsvi.distributions as dist
    from jsvi import constraints

    data = jnp.array([1.0] * 6 + [0.0] * 4)

    def model(data):
        f = jsvi.sample("f", dist.Beta(10.0, 10.0))
        with jsvi.plate("data", data.shape[0]):
            jsvi.sample("obs", dist.Bernoulli(f), obs=data)

    def guide(data):
        a = jsvi.param("a", 15.0, constraint=constraints.positive)
        b = jsvi.param("b", 15.0, constraint=constraints.positive)
        jsvi.sample("f", dist.Beta(a, b))

    def batches(delay):
        while True:
            time.sleep(delay)
            yield (data,), {}

    svi = jsvi.SVI(model, guide, optax.adam(1e-2), jsvi.Trace_ELBO())
    path, delay = sys.argv[1], float(sys.argv[2])
    state, losses = jsvi.svi_run(svi, 0, 300, batches=batches(delay), progress_bar=False,
                                 checkpoint_every=20, checkpoint_path=path)
    jsvi.save_state(path + ".final", state)
    """
)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ)
    # reference: the same run, uninterrupted
    ref = tmp_path / "ref.ckpt"
    subprocess.run([sys.executable, str(script), str(ref), "0"], check=True, env=env, timeout=300)
    # interrupted: killed with SIGKILL once a few checkpoints exist
    path = tmp_path / "run.ckpt"
    proc = subprocess.Popen([sys.executable, str(script), str(path), "0.02"], env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if path.exists():
            break
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not pathlib.Path(str(path) + ".final").exists(), "the run finished before the kill"
    svi_like = _like_state()
    # nothing was corrupted: the last checkpoint before the kill loads
    killed_at = int(jsvi.load_state(path, like=svi_like).step)
    assert 0 < killed_at < 300 and killed_at % 20 == 0
    # resume: the same command again
    subprocess.run([sys.executable, str(script), str(path), "0"], check=True, env=env, timeout=300)
    final = jsvi.load_state(str(path) + ".final", like=svi_like)
    reference = jsvi.load_state(str(ref) + ".final", like=svi_like)
    assert int(final.step) == 300
    assert_states_identical(final, reference)


def _like_state():
    def g(data):
        del data
        a = jsvi.param("a", 15.0, constraint=constraints.positive)
        b = jsvi.param("b", 15.0, constraint=constraints.positive)
        jsvi.sample("f", dist.Beta(a, b))

    svi = jsvi.SVI(model, g, optax.adam(1e-2), jsvi.Trace_ELBO())
    return jsvi.svi_init(svi, 0, DATA)
