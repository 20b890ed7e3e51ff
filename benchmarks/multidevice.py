"""Multi-device scaling: one full-batch logistic regression step (N=200,000, D=20)
with the data sharded along the plate dimension over 1, 2 and 4 devices and the
parameters replicated, under ``jax.jit`` with no change to the model. On a CPU the
devices are forced with ``XLA_FLAGS=--xla_force_host_platform_device_count=K``, one
subprocess per count; they share this machine's cores, so this measures the SPMD
overhead and correctness more than speed-up. On a GPU host, run it with the real
devices. Results go to ``results/multidevice-<device>.json``.

Usage: ``python benchmarks/multidevice.py [--smoke] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np, optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
sys.path.insert(0, sys.argv[3])
from core_step import logreg_guide, logreg_model
import jsvi

N, D = int(sys.argv[1]), int(sys.argv[2])
kx, kw = jax.random.split(jax.random.key(42))
X = jax.random.normal(kx, (N, D))
y = (X @ jax.random.normal(kw, (D,)) > 0).astype(jnp.float32)
mesh = Mesh(np.array(jax.devices()), ("data",))
X = jax.device_put(X, NamedSharding(mesh, P("data", None)))
y = jax.device_put(y, NamedSharding(mesh, P("data")))
svi = jsvi.SVI(logreg_model, logreg_guide, optax.adam(1e-3), jsvi.Trace_ELBO())
update = jax.jit(jsvi.svi_update, static_argnums=0)
state = jsvi.svi_init(svi, 0, X, y)
t0 = time.perf_counter(); state, loss = update(svi, state, X, y); loss.block_until_ready()
first = time.perf_counter() - t0
times = []
for _ in range(int(sys.argv[4])):
    t0 = time.perf_counter(); state, loss = update(svi, state, X, y); loss.block_until_ready()
    times.append(time.perf_counter() - t0)
print(json.dumps({"devices": jax.device_count(), "first_call_s": first,
                  "median_s": float(np.median(times)), "loss": float(loss)}))
"""


def main() -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from _harness import context, write

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    opts = parser.parse_args()
    N, D, calls = (4_000, 5, 5) if opts.smoke else (200_000, 20, 50)
    rows = []
    for count in (1, 2, 4):
        env = dict(os.environ)
        if env.get("JAX_PLATFORMS", "cpu") == "cpu" or "cuda" not in env.get("JAX_PLATFORMS", ""):
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
            env["JAX_PLATFORMS"] = "cpu"
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(N), str(D), os.path.dirname(os.path.abspath(__file__)), str(calls)],
            capture_output=True, text=True, env=env, timeout=600,
        )
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = rows[0]["median_s"]
    print(f"{'devices':>8}{'ms/step':>10}{'vs 1':>8}{'loss':>14}")
    for r in rows:
        print(f"{r['devices']:>8}{1e3 * r['median_s']:>10.2f}{r['median_s'] / base:>8.2f}{r['loss']:>14.2f}")
    payload = {"context": context(), "smoke": opts.smoke, "sizes": {"N": N, "D": D}, "rows": rows}
    path = write("multidevice" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
