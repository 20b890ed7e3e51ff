"""Time to the first step from a cold process: jsvi against NumPyro.

Compile times measured inside one long-lived process swing by ±20% from run to run
on a shared CPU, and whoever goes second there can reuse traces the first one left
behind. Here every measurement is its own fresh Python process, repeated, with the
contenders alternating, so each pays exactly what a user's new script or notebook
kernel pays.

Each process imports its libraries and builds its data, compiles one trivial
program (the backend's one-time start-up, the same for everyone), then times:

- ``setup``: ``svi_init`` (jsvi) or ``svi.init`` (NumPyro), to a ready state;
- ``first call``: the first jitted update, compile included;
- ``second call``: the next update (steady state, for scale).

``first step`` = setup + first call is the wait before training starts. Reported
per workload and contender: median and spread over the repeats, and the ratios of
medians jsvi / NumPyro. Results go to ``results/first_step-<device>.json``.

Usage: ``python benchmarks/first_step.py [--repeats 5] [--workloads coin,logreg,...]``
(``--smoke``: two workloads, tiny sizes, one repeat).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
WORKLOADS = ("coin", "logreg", "minibatch", "partIII", "mixture", "particles512")
CONTENDERS = ("jsvi", "numpyro")


# --- child: one cold measurement -------------------------------------------------------


def _builders(workload: str, smoke: bool):
    """``(build_jsvi, build_numpyro)``: each returns ``(init, step)``, where ``init()``
    makes the ready state and ``step(state) -> (state, loss)`` is the jitted update."""
    import jax
    import jax.numpy as jnp
    import optax

    import jsvi

    sys.path.insert(0, str(HERE))
    import core_step  # noqa: PLC0415

    def jsvi_pair(svi, *args):
        def init():
            return jsvi.svi_init(svi, jax.random.key(0), *args)

        return init, lambda state: jsvi.svi_update(svi, state, *args)

    def numpyro_pair(svi, *args):
        update = jax.jit(svi.update)

        def init():
            return svi.init(jax.random.key(0), *args)

        return init, lambda state: update(state, *args)

    N, D, B = (2_000, 5, 100) if smoke else (50_000, 20, 1_000)
    if workload in ("coin", "partIII"):
        import partIII_baseline as P3  # noqa: PLC0415
        import suite  # noqa: PLC0415

        if workload == "coin":
            opt, data = optax.adam(suite.COIN_LR), jnp.array(suite.COIN_DATA)
            svi = jsvi.SVI(
                core_step.coin_model, core_step.coin_guide, opt, jsvi.Trace_ELBO()
            )
            return (
                lambda: jsvi_pair(svi, data),
                lambda: numpyro_pair(suite.numpyro_coin_svi(opt), data),
            )
        opt = optax.adam(5e-4, b1=0.93, b2=0.999)  # as partIII_baseline.py and suite.py
        svi = jsvi.SVI(P3.model, P3.make_guide(False), opt, jsvi.TraceGraph_ELBO())
        return (
            lambda: jsvi_pair(svi, P3.DATA),
            lambda: numpyro_pair(
                suite.numpyro_coin_svi(opt, score_function=True), P3.DATA
            ),
        )
    if workload in ("logreg", "minibatch"):
        import minibatch  # noqa: PLC0415
        import particles  # noqa: PLC0415
        import suite  # noqa: PLC0415

        X, y = suite._logreg_data(N, D)
        opt = optax.adam(1e-3)
        if workload == "logreg":
            svi = jsvi.SVI(
                core_step.logreg_model, core_step.logreg_guide, opt, jsvi.Trace_ELBO()
            )
            return lambda: jsvi_pair(svi, X, y), lambda: numpyro_pair(
                particles.numpyro_svi(opt, 1), X, y
            )
        svi = jsvi.SVI(minibatch.model, minibatch.guide, opt, jsvi.Trace_ELBO())
        return (
            lambda: jsvi_pair(svi, X, y, B),
            lambda: numpyro_pair(minibatch.numpyro_svi(B), X, y),
        )
    if workload == "particles512":
        import particles  # noqa: PLC0415
        import suite  # noqa: PLC0415

        X, y = suite._logreg_data(*((500, 5) if smoke else (5_000, 20)))  # as particles.py
        opt = optax.adam(1e-3)
        svi = jsvi.SVI(
            core_step.logreg_model,
            core_step.logreg_guide,
            opt,
            jsvi.Trace_ELBO(num_particles=512),
        )
        return lambda: jsvi_pair(svi, X, y), lambda: numpyro_pair(
            particles.numpyro_svi(opt, 512), X, y
        )
    if workload == "mixture":
        import enum_mixture as EM  # noqa: PLC0415

        data = EM.make_data(500 if smoke else 1_000, jax.random.key(1))
        svi = jsvi.SVI(
            EM.jsvi_model,
            EM.empty_guide,
            optax.adam(1e-2),
            jsvi.TraceEnum_ELBO(max_plate_nesting=1),
        )
        return lambda: jsvi_pair(svi, data), lambda: numpyro_pair(EM.numpyro_svi(), data)
    raise SystemExit(
        f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}"
    )


def child(workload: str, contender: str, smoke: bool) -> dict:
    import jax
    import jax.numpy as jnp

    build = dict(zip(CONTENDERS, _builders(workload, smoke)))[contender]
    init, step = build()
    # the backend's one-time start-up, the same for every contender
    jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.ones(3)))
    t0 = time.perf_counter()
    state = jax.block_until_ready(init())
    t1 = time.perf_counter()
    state, loss = jax.block_until_ready(step(state))
    t2 = time.perf_counter()
    state, loss = jax.block_until_ready(step(state))
    t3 = time.perf_counter()
    return {
        "setup_s": t1 - t0,
        "first_call_s": t2 - t1,
        "second_call_s": t3 - t2,
        "first_step_s": t2 - t0,
        "loss": float(loss),
    }


# --- parent: repeat in fresh processes ---------------------------------------------------


def run_one(workload: str, contender: str, smoke: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", workload, contender] + (
        ["--smoke"] if smoke else []
    )
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=HERE, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{workload}/{contender} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _have_numpyro() -> bool:
    import importlib.util  # noqa: PLC0415

    return all(importlib.util.find_spec(m) is not None for m in ("numpyro", "funsor"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="fresh processes per contender"
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument(
        "--smoke", action="store_true", help="two workloads, tiny, one repeat"
    )
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    parser.add_argument(
        "--child", nargs=2, metavar=("WORKLOAD", "CONTENDER"), help=argparse.SUPPRESS
    )
    opts = parser.parse_args()
    if opts.child:
        print(json.dumps(child(*opts.child, opts.smoke)))
        return

    import numpy as np

    sys.path.insert(0, str(HERE))
    from _harness import context, write  # noqa: PLC0415

    workloads = ("logreg", "mixture") if opts.smoke else tuple(opts.workloads.split(","))
    repeats = 1 if opts.smoke else opts.repeats
    contenders = CONTENDERS if _have_numpyro() else ("jsvi",)
    rows = []
    for w in workloads:
        runs = {c: [] for c in contenders}
        for r in range(repeats):
            order = contenders if r % 2 == 0 else contenders[::-1]
            for c in order:
                runs[c].append(run_one(w, c, opts.smoke))
        row = {"workload": w, "runs": runs, "median": {}, "spread": {}}
        for c, rs in runs.items():
            row["median"][c] = {k: float(np.median([x[k] for x in rs])) for k in rs[0]}
            row["spread"][c] = {
                k: [float(min(x[k] for x in rs)), float(max(x[k] for x in rs))]
                for k in rs[0]
            }
        if "numpyro" in runs:
            j, n = row["median"]["jsvi"], row["median"]["numpyro"]
            row["ratio"] = {
                k: j[k] / n[k] for k in ("setup_s", "first_call_s", "first_step_s")
            }
        rows.append(row)
        _print_row(row)
    payload = {
        "context": context(),
        "smoke": opts.smoke,
        "repeats": repeats,
        "rows": rows,
        "note": "each figure is the median over fresh processes; spread is [min, max]",
    }
    path = write("first_step" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


def _print_row(row: dict) -> None:
    med, spread = row["median"], row["spread"]
    print(f"\n{row['workload']}: median over fresh processes (min-max), seconds")
    print(f"{'contender':<10}{'setup':>20}{'first call':>20}{'first step':>20}")
    for c in med:
        cells = "".join(
            f"{med[c][k]:>8.2f} ({spread[c][k][0]:.2f}-{spread[c][k][1]:.2f})"
            for k in ("setup_s", "first_call_s", "first_step_s")
        )
        print(f"{c:<10}{cells}")
    if "ratio" in row:
        r = row["ratio"]
        print(
            f"jsvi / NumPyro: setup {r['setup_s']:.2f}, first call {r['first_call_s']:.2f}, "
            f"first step {r['first_step_s']:.2f}"
        )


if __name__ == "__main__":
    main()
