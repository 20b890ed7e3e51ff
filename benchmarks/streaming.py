"""Streaming minibatches: a Bayesian logistic regression on N=1,000,000 x 20 rows
kept on the host, fed to ``svi_run(..., batches=...)`` 1,000 rows at a time, against
the same model with the whole dataset on the device and ``plate(subsample_size=)``
inside one compiled ``svi_run``. Reports steps per second and the process's peak
resident memory after each. Results go to ``results/streaming-<device>.json``.

Usage: ``python benchmarks/streaming.py [--smoke] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import context, write
from minibatch import guide as sub_guide
from minibatch import model as sub_model

import jsvi
import jsvi.distributions as dist
from jsvi import constraints


def model(x, y, N):
    D = x.shape[1]
    w = jsvi.sample("w", dist.Normal(jnp.zeros(D), 1.0).to_event(1))
    b = jsvi.sample("b", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", N, subsample=jnp.arange(x.shape[0])):
        jsvi.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def guide(x, y, N):
    del y, N
    D = x.shape[1]
    w_loc = jsvi.param("w_loc", jnp.zeros(D))
    w_scale = jsvi.param("w_scale", 0.1 * jnp.ones(D), constraint=constraints.positive)
    jsvi.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
    b_loc = jsvi.param("b_loc", 0.0)
    b_scale = jsvi.param("b_scale", 0.1, constraint=constraints.positive)
    jsvi.sample("b", dist.Normal(b_loc, b_scale))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    opts = parser.parse_args()
    N, D, B, steps = (20_000, 5, 100, 200) if opts.smoke else (1_000_000, 20, 1_000, 3_000)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    y = (X @ rng.standard_normal(D, dtype=np.float32) > 0).astype(np.float32)
    rss_data = peak_rss_mb()

    def batches():
        while True:
            idx = rng.integers(0, N, B)
            yield (X[idx], y[idx], N), {}

    opt = optax.adam(1e-2)
    svi = jsvi.SVI(model, guide, opt, jsvi.Trace_ELBO())
    jsvi.svi_run(svi, 0, 20, batches=batches(), progress_bar=False)  # compile
    t0 = time.perf_counter()
    state, losses = jsvi.svi_run(svi, 0, steps, batches=batches(), progress_bar=False)
    jax.block_until_ready(state)
    stream_s = time.perf_counter() - t0
    rss_stream = peak_rss_mb()

    svi_dev = jsvi.SVI(sub_model, sub_guide, opt, jsvi.Trace_ELBO())
    Xd, yd = jnp.asarray(X), jnp.asarray(y)
    jsvi.svi_run(svi_dev, 0, steps, Xd, yd, B, progress_bar=False)  # compile
    t0 = time.perf_counter()
    state_dev, losses_dev = jsvi.svi_run(svi_dev, 0, steps, Xd, yd, B, progress_bar=False)
    jax.block_until_ready(state_dev)
    device_s = time.perf_counter() - t0
    rss_device = peak_rss_mb()

    rows = {
        "streamed_batches": {"steps_per_s": steps / stream_s, "peak_rss_mb": rss_stream},
        "device_subsample": {"steps_per_s": steps / device_s, "peak_rss_mb": rss_device},
    }
    print(f"data on host: {X.nbytes / 2**20:.0f} MiB; peak RSS after loading {rss_data:.0f} MiB")
    print(f"{'mode':<20}{'steps/s':>10}{'peak RSS MiB':>14}")
    for name, r in rows.items():
        print(f"{name:<20}{r['steps_per_s']:>10.0f}{r['peak_rss_mb']:>14.0f}")
    print(f"final loss: streamed {float(losses[-100:].mean()):.1f}, device {float(losses_dev[-100:].mean()):.1f}")
    payload = {
        "context": context(),
        "smoke": opts.smoke,
        "sizes": {"N": N, "D": D, "B": B, "steps": steps},
        "data_mib": X.nbytes / 2**20,
        "rows": rows,
    }
    path = write("streaming" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
