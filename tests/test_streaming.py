"""``svi_run(..., batches=...)`` fed from a memory-mapped file on disk: the same
result as the same batches held in memory, or already on the device, and the
iterator is never read past the run's last step (the prefetch reads one ahead)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jsvi
import jsvi.distributions as dist
from jsvi import constraints

N, D, B, STEPS = 2_000, 4, 100, 15


def model(x, y, size):
    w = jsvi.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
    with jsvi.plate("data", size, subsample=jnp.arange(x.shape[0])):
        jsvi.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def guide(x, y, size):
    del y, size
    loc = jsvi.param("loc", jnp.zeros(x.shape[1]))
    scale = jsvi.param("scale", jnp.full(x.shape[1], 0.1), constraint=constraints.positive)
    jsvi.sample("w", dist.Normal(loc, scale).to_event(1))


def _files(tmp_path):
    rng = np.random.default_rng(0)
    x = np.memmap(tmp_path / "x.f32", np.float32, "w+", shape=(N, D))
    y = np.memmap(tmp_path / "y.f32", np.float32, "w+", shape=(N,))
    x[:] = rng.standard_normal((N, D), dtype=np.float32)
    y[:] = (x @ np.arange(1.0, D + 1, dtype=np.float32) > 0).astype(np.float32)
    x.flush()
    y.flush()
    del x, y
    return (
        np.memmap(tmp_path / "x.f32", np.float32, "r", shape=(N, D)),
        np.memmap(tmp_path / "y.f32", np.float32, "r", shape=(N,)),
    )


class Counted:
    """Batches of consecutive rows; counts how many were read."""

    def __init__(self, x, y, convert):
        self.x, self.y, self.convert, self.read = x, y, convert, 0

    def __iter__(self):
        for start in range(0, N, B):
            self.read += 1
            rows = slice(start, start + B)
            yield (self.convert(self.x[rows]), self.convert(self.y[rows]), N), {}


def test_memmap_batches_equal_in_memory_and_device_batches(tmp_path):
    xm, ym = _files(tmp_path)
    svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    results = {}
    for name, convert in [
        ("memmap", lambda a: a),  # views of the file, read as the run goes
        ("memory", np.array),  # copies in host memory
        ("device", jnp.asarray),  # already on the device
    ]:
        stream = Counted(xm, ym, convert)
        state, losses = jsvi.svi_run(svi, 0, STEPS, batches=stream, progress_bar=False)
        assert stream.read == STEPS  # the prefetch never reads past the last step
        assert losses.shape == (STEPS,)
        results[name] = (state, losses)
    ref_state, ref_losses = results["device"]
    for name in ("memmap", "memory"):
        state, losses = results[name]
        np.testing.assert_array_equal(losses, ref_losses, err_msg=name)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_memmap_batches_equal_svi_update_steps(tmp_path):
    """The streamed run is ``svi_init`` on the first batch plus one ``svi_update``
    per batch (float32: the two compiled programs may round differently, by a few
    ulps per step, so 1e-5 relative over 15 steps)."""
    xm, ym = _files(tmp_path)
    svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    state, losses = jsvi.svi_run(
        svi, 0, STEPS, batches=Counted(xm, ym, lambda a: a), progress_bar=False
    )
    batches = list(Counted(xm, ym, jnp.asarray))[:STEPS]
    ref = jsvi.svi_init(svi, 0, *batches[0][0])
    ref_losses = []
    for args, _ in batches:
        ref, loss = jsvi.svi_update(svi, ref, *args)
        ref_losses.append(loss)
    np.testing.assert_allclose(losses, np.array(ref_losses), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
