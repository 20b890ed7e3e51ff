"""Checkpoints of an ``SVIState`` sharded over 4 forced host devices.

- ``jsvi.save_state``/``load_state`` (one file, one host): bit-exact, and the
  restored leaves take the shardings of ``like``.
- orbax (optional extra): an asynchronous save and a restore, bit-exact shard by
  shard, a resumed run that continues exactly where the saved one would have, and
  a restore onto another layout. (Across two processes, see
  ``tests/test_multiprocess.py``.)

Runs in a subprocess: the device count must be set before JAX starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 4)
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import jsvi
    import jsvi.distributions as dist
    from jsvi import constraints

    N, D = 32, 3

    def model(x, y):
        w = jsvi.sample("w", dist.Normal(jnp.zeros(D), 1.0).to_event(1))
        with jsvi.plate("data", N):
            z = jsvi.sample("z", dist.Normal(0.0, 0.5))
            jsvi.sample("y", dist.Normal(x @ w + z, 1.0), obs=y)

    def guide(x, y):
        w_loc = jsvi.param("w_loc", jnp.zeros(D))
        w_scale = jsvi.param("w_scale", jnp.full(D, 0.5), constraint=constraints.positive)
        jsvi.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
        z_loc = jsvi.param("z_loc", jnp.zeros(N))
        with jsvi.plate("data", N):
            jsvi.sample("z", dist.Normal(z_loc, 0.1))

    mesh = Mesh(np.array(jax.devices()), ("data",))
    by_row, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    Y = X @ np.array([1.0, -2.0, 0.5], np.float32)
    x, y = jax.device_put(X, by_row), jax.device_put(Y, by_row)

    def placement(leaf):
        return by_row if leaf.ndim and leaf.shape[0] == N else replicated

    svi = jsvi.SVI(model, guide, optax.adam(1e-2), jsvi.Trace_ELBO())
    update = jax.jit(jsvi.svi_update, static_argnums=0)
    state = jsvi.svi_init(svi, jax.random.key(0), x, y)
    state = jax.device_put(state, jax.tree.map(placement, state))
    for _ in range(3):
        state, _ = update(svi, state, x, y)

    def data(a):
        return jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a

    def same_shards(a, b):
        a, b = data(a), data(b)
        return (a.sharding == b.sharding and a.dtype == b.dtype and a.shape == b.shape
                and all(sa.index == sb.index
                        and np.array_equal(np.asarray(sa.data), np.asarray(sb.data))
                        for sa, sb in zip(a.addressable_shards, b.addressable_shards)))

    def same_values(a, b):
        return bool(np.array_equal(np.asarray(data(a)), np.asarray(data(b))))

    report = {
        "z_loc_spec": str(state.params["z_loc"].sharding.spec),
        "z_loc_shards": len(state.params["z_loc"].addressable_shards),
    }
    jsvi.save_state(sys.argv[1] + ".jsvi", state)
    like = jsvi.svi_init(svi, jax.random.key(1), x, y)
    like = jax.device_put(like, jax.tree.map(placement, like))
    loaded = jsvi.load_state(sys.argv[1] + ".jsvi", like=like)
    report["file_exact"] = all(jax.tree.leaves(jax.tree.map(same_shards, state, loaded)))
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        print("REPORT " + json.dumps(report))
        sys.exit(0)

    manager = ocp.CheckpointManager(
        sys.argv[1],
        options=ocp.CheckpointManagerOptions(enable_async_checkpointing=True),
    )
    saved = state
    manager.save(int(saved.step), args=ocp.args.StandardSave(saved))
    for _ in range(3):  # training goes on while the save runs
        state, _ = update(svi, state, x, y)
    manager.wait_until_finished()

    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, saved)
    restored = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(target))
    resumed = restored
    for _ in range(3):
        resumed, _ = update(svi, resumed, x, y)

    # restore onto another layout: everything on 2 of the 4 devices
    mesh2 = Mesh(np.array(jax.devices()[:2]), ("data",))
    target2 = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=NamedSharding(
            mesh2, P("data") if a.ndim and a.shape[0] == N else P())),
        saved,
    )
    moved = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(target2))
    manager.close()

    print("REPORT " + json.dumps({
        **report,
        "structure": jax.tree.structure(restored) == jax.tree.structure(saved),
        "exact": all(jax.tree.leaves(jax.tree.map(same_shards, saved, restored))),
        "resumed_exact": all(jax.tree.leaves(jax.tree.map(same_shards, state, resumed))),
        "moved_devices": len(moved.params["z_loc"].sharding.device_set),
        "moved_exact": all(jax.tree.leaves(jax.tree.map(same_values, saved, moved))),
        "constraints": repr(restored.param_constraints),
        "key_type": str(restored.rng_key.dtype),
    }))
    """
)


def test_state_sharded_over_4_devices_round_trips_bit_exact(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "ckpt")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("REPORT ")][-1]
    r = json.loads(line[len("REPORT ") :])
    assert r["z_loc_spec"] == "P('data',)" and r["z_loc_shards"] == 4
    assert r["file_exact"]  # jsvi's file: values and shardings of `like`
    if "exact" not in r:  # orbax not installed (test_multiprocess.test_orbax_is_installed)
        return
    assert r["structure"]
    assert r["exact"]  # every leaf, shard by shard, with its sharding
    assert r["resumed_exact"]  # 3 more steps from the restore = 3 more from the original
    assert r["moved_devices"] == 2 and r["moved_exact"]
    assert "positive" in r["constraints"]
    assert r["key_type"].startswith("key<")
