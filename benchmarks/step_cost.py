"""What one SVI step costs: compiled in a loop, dispatched from Python, and the
first one from a cold process. jsvi against hand-written JAX and NumPyro, side by
side in one run.

Workloads: the coin (Beta-Bernoulli, 10 flips, Beta guide) and the Bayesian
logistic regression (N=50,000, D=20, mean-field Normal guide, full batch), with
Adam(1e-3), as in ``core_step.py``. Three measurements:

(a) **Compiled step in a loop.** One call of ``jsvi.svi_run(svi, key, S, *data,
    progress_bar=False)`` (a ``lax.fori_loop`` with traced bounds over
    ``jsvi.step.step``) against the same loss hand-written in JAX in the same
    kind of loop (one ``jax.jit`` of a ``lax.fori_loop`` with traced bounds over
    S hand-written steps, the losses written into a buffer) and against NumPyro's
    compiled loop: one ``jax.jit`` of the ``lax.scan`` over ``SVI.update`` that
    ``numpyro.infer.SVI.run(..., progress_bar=False)`` runs. ``run`` itself is
    not the contender: it traces and compiles that scan afresh on every call, so
    it is timed once, on its own, from an ``init_state`` (``run`` without one
    also calls ``SVI.init``, which is timed on its own too). ``svi_run`` is
    timed whole: it includes its ``svi_init`` (already compiled, well under 1%
    of a loop here, timed on its own too) and, with its default
    ``skip_nonfinite=True``, one finiteness check of the losses and the final
    state at the end of the loop; ``jsvi_noskip`` is the loop alone, the program
    closest to the hand-written one:
    ``svi_run(..., skip_nonfinite=False, init_state=state0)``.
    Per-step time = loop time / S. The rounds interleave the contenders in
    shuffled order; ratios are medians over rounds of the per-round ratio. The
    control, ``hand_again``, is the hand-written loop compiled a second time.
(b) **Dispatch.** ``jsvi.svi_update(svi, state, data)`` from Python against a
    bare ``jax.jit`` of the same pure step with the same arguments,
    ``jax.jit(lambda s, x: jsvi.step.update(svi, s, [x], spec))``, each in
    a Python loop feeding back its state, on the coin; control: the bare jit
    compiled a second time.
(c) **First step.** In fresh Python processes (one per workload and repeat), after
    the imports, the data and one trivial compiled program (the backend's one-time
    start-up, reported apart): ``svi_init`` to a ready state, then the first and
    second ``svi_update``. Median over the repeats.

Results go to ``results/step_cost-<device>.json``.

Usage: ``python benchmarks/step_cost.py [--smoke] [--out DIR] [--rounds R]
[--processes K]``. ``--smoke`` (for CI) runs the logistic regression only, at
N=2,000, D=5, in all three parts, with two rounds and one cold process, and
leaves out the second compilations (``jsvi_noskip`` and the controls) and
NumPyro's ``run``. The result file records the load average at the start and
the end (``loadavg``): the figures are only as steady as the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import context, interleaved, write
from core_step import (
    coin_guide,
    coin_hand,
    coin_model,
    logreg_guide,
    logreg_hand,
    logreg_model,
)

import jsvi
from jsvi._args import split_args

HERE = pathlib.Path(__file__).resolve().parent
COIN_DATA = [1.0] * 6 + [0.0] * 4
LR = 1e-3


def sizes(smoke: bool) -> dict:
    """Problem sizes, loop lengths and repeats."""
    if smoke:
        return dict(smoke=True, N=2_000, D=5, coin_S=200, logreg_S=20, rounds=2,
                    dispatch_blocks=2, dispatch_calls=20, processes=1)
    return dict(smoke=False, N=50_000, D=20, coin_S=10_000, logreg_S=500, rounds=15,
                dispatch_blocks=10, dispatch_calls=200, processes=5)


def logreg_data(N: int, D: int):
    """The data of ``core_step.py`` and ``suite.py``."""
    key_x, key_w = jax.random.split(jax.random.key(42))
    X = jax.random.normal(key_x, (N, D))
    y = (X @ jax.random.normal(key_w, (D,)) > 0).astype(jnp.float32)
    return X, y


def workloads(sz: dict) -> list[tuple]:
    """``(name, model, guide, hand builder, numpyro builder, data, S)`` per workload
    (smoke: the small logistic regression only; the coin's programs take the
    longest to compile)."""
    import particles  # noqa: PLC0415
    import suite  # noqa: PLC0415

    X, y = logreg_data(sz["N"], sz["D"])
    coin = ("coin", coin_model, coin_guide, coin_hand,
            suite.numpyro_coin_svi, (jnp.array(COIN_DATA),), sz["coin_S"])
    logreg = (f"logreg N={sz['N']} D={sz['D']}", logreg_model, logreg_guide,
              lambda opt: logreg_hand(opt, sz["D"]),
              lambda opt: particles.numpyro_svi(opt, 1), (X, y), sz["logreg_S"])
    return [logreg] if sz["smoke"] else [coin, logreg]


# --- (a) compiled step in a loop ----------------------------------------------------------


def hand_loop(hand, opt, S: int):
    """A jitted ``lax.fori_loop`` with traced bounds over the hand-written step,
    writing each loss into a buffer, as ``jsvi.step.run_steps`` does; returns
    ``(run, initial carry)`` with ``run(u, opt_state, key, losses, *data)``."""
    step, (u0, o0, k0) = hand(opt)

    @jax.jit
    def run(u, o, key, losses, start, stop, *data):
        def body(i, carry):
            u, o, key, losses = carry
            u, o, key, loss = step(u, o, key, *data)
            return u, o, key, losses.at[i].set(loss)

        return jax.lax.fori_loop(start, stop, body, (u, o, key, losses))

    buf = jax.device_put(np.zeros((S,), np.float32))
    return run, (u0, o0, k0, buf)


def numpyro_loop(svi, S: int):
    """The loop ``numpyro.infer.SVI.run(progress_bar=False)`` runs, compiled once."""

    @jax.jit
    def run(state, *data):
        return jax.lax.scan(lambda s, _: svi.update(s, *data), state, None, length=S)

    return run


def bench_loop(name, model, guide, hand, numpyro_svi, data, S, rounds, entry=True) -> dict:
    """Part (a) on one workload; ``entry=False`` (smoke) leaves out the second
    compilations (``jsvi_noskip``, ``hand_again``) and NumPyro's own entry points."""
    opt = optax.adam(LR)
    svi = jsvi.SVI(model, guide, opt, jsvi.Trace_ELBO())
    key = jax.random.key(0)
    last: dict = {}

    state0 = jsvi.svi_init(svi, key, *data)

    def jsvi_runner(label, skip):
        # noskip: the loop alone (from an initial state, no finiteness checks)
        start = {} if skip else {"init_state": state0}

        def run():
            state, losses = jsvi.svi_run(
                svi, key, S, *data, progress_bar=False, skip_nonfinite=skip, **start
            )
            last[label] = losses
            return state, losses

        return run

    def hand_runner(label):
        loop, carry = hand_loop(hand, opt, S)

        def run():
            out = loop(*carry, 0, S, *data)
            last[label] = out[3]
            return out

        return run

    contenders = {"jsvi": jsvi_runner("jsvi", True), "hand": hand_runner("hand")}
    if entry:  # not in smoke runs: the same code as jsvi and hand, compiled again
        contenders["jsvi_noskip"] = jsvi_runner("jsvi_noskip", False)
        contenders["hand_again"] = hand_runner("hand_again")
    np_svi = numpyro_svi(opt)
    np_extra = {}
    if np_svi is not None:
        np_state = np_svi.init(key, *data)
        np_loop = numpyro_loop(np_svi, S)

        def run_numpyro():
            state, losses = np_loop(np_state, *data)
            last["numpyro"] = losses
            return state, losses

        contenders["numpyro"] = run_numpyro
    first = {}
    for label, fn in contenders.items():  # compile, timed on its own
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        first[label] = time.perf_counter() - t0
    stats = interleaved(contenders, blocks=1, calls=rounds, warmup=0)
    if np_svi is not None and entry:
        # NumPyro's own entry points, once each: run() from a state (trace +
        # compile + loop, every call) and init() (which run() calls without one).
        t0 = time.perf_counter()
        jax.block_until_ready(np_svi.init(key, *data))
        np_extra["init_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = np_svi.run(key, S, *data, progress_bar=False, init_state=np_state)
        jax.block_until_ready(res.losses)
        np_extra["run_from_state_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(jsvi.svi_init(svi, key, *data))
    jsvi_init_s = time.perf_counter() - t0
    per_step = {k: v["median_s"] / S for k, v in stats.items()}
    # What each loop computed: the mean loss over its last tenth (same work done).
    tail = {k: float(np.mean(np.asarray(v)[-max(1, S // 10):])) for k, v in last.items()}
    row = {
        "workload": name,
        "steps_per_loop": S,
        "first_call_s": first,
        "loop": stats,
        "per_step_s": per_step,
        "ratio_hand": stats["jsvi"]["paired"]["hand"],
        "ratio_noskip_hand": stats.get("jsvi_noskip", {}).get("paired", {}).get("hand"),
        "control_ratio": stats.get("hand_again", {}).get("paired", {}).get("hand"),
        "jsvi_svi_init_compiled_s": jsvi_init_s,
        "final_loss_mean": tail,
    }
    if np_svi is not None:
        row["ratio_numpyro"] = stats["jsvi"]["paired"]["numpyro"]
        row["ratio_noskip_numpyro"] = (
            stats.get("jsvi_noskip", {}).get("paired", {}).get("numpyro")
        )
        row["numpyro_entry_points"] = np_extra
    return row


# --- (b) dispatch ---------------------------------------------------------------------


def bench_dispatch(workload: tuple, blocks: int, calls: int, control: bool = True) -> dict:
    name, model, guide, _, _, data, _ = workload
    svi = jsvi.SVI(model, guide, optax.adam(LR), jsvi.Trace_ELBO())
    state0 = jsvi.svi_init(svi, jax.random.key(0), *data)
    _, spec = split_args(data, {}, "bench")

    def bare_jit():  # the data arrays are the traced leaves, in order
        return jax.jit(lambda s, *xs: jsvi.step.update(svi, s, list(xs), spec))

    box = {"svi_update": state0, "bare_jit": state0, "bare_jit_again": state0}

    def run_update():
        box["svi_update"], loss = jsvi.svi_update(svi, box["svi_update"], *data)
        return loss

    def runner(label, fn):
        def run():
            box[label], loss = fn(box[label], *data)
            return loss

        return run

    contenders = {"svi_update": run_update, "bare_jit": runner("bare_jit", bare_jit())}
    if control:
        contenders["bare_jit_again"] = runner("bare_jit_again", bare_jit())
    stats = interleaved(contenders, blocks=blocks, calls=calls)
    same = all(
        bool(jnp.all(box["svi_update"].params[k] == box["bare_jit"].params[k]))
        for k in box["svi_update"].params
    )
    return {
        "workload": name,
        "calls": stats,
        "ratio": stats["svi_update"]["paired"]["bare_jit"],
        "control_ratio": stats.get("bare_jit_again", {}).get("paired", {}).get("bare_jit"),
        "same_params": same,
    }


# --- (c) first step, from cold processes --------------------------------------------------


def cold_child(workload: str, smoke: bool) -> dict:
    """One cold measurement in this (fresh) process."""
    sz = sizes(smoke)
    t0 = time.perf_counter()
    jax.jit(lambda x: x + 1)(jnp.zeros(())).block_until_ready()  # backend start-up
    backend_s = time.perf_counter() - t0
    if workload == "coin":
        model, guide, data = coin_model, coin_guide, (jnp.array(COIN_DATA),)
    else:
        model, guide = logreg_model, logreg_guide
        data = jax.block_until_ready(logreg_data(sz["N"], sz["D"]))
    svi = jsvi.SVI(model, guide, optax.adam(LR), jsvi.Trace_ELBO())
    out = {"workload": workload, "backend_start_s": backend_s}
    # The key is made first, as a program does before it calls svi_init: its
    # first seeding compiles a small JAX program of its own, not svi_init's.
    key = jax.block_until_ready(jax.random.key(0))
    t0 = time.perf_counter()
    state = jax.block_until_ready(jsvi.svi_init(svi, key, *data))
    out["svi_init_s"] = time.perf_counter() - t0
    for label in ("first_update_s", "second_update_s"):
        t0 = time.perf_counter()
        state, loss = jax.block_until_ready(jsvi.svi_update(svi, state, *data))
        out[label] = time.perf_counter() - t0
    return out


def bench_cold(processes: int, smoke: bool, names: tuple[str, ...]) -> list[dict]:
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(processes):
        for n in names:  # alternating, so both see the same drift in load
            cmd = [sys.executable, __file__, "--cold", n] + (["--smoke"] if smoke else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=HERE)
            runs[n].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = []
    for n, recs in runs.items():
        row = {"workload": n, "processes": len(recs)}
        for k in ("backend_start_s", "svi_init_s", "first_update_s", "second_update_s"):
            values = [r[k] for r in recs]
            row[k] = float(np.median(values))
            row[k + "_all"] = values
        rows.append(row)
    return rows


# --- driver ------------------------------------------------------------------------------


def _num(x, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved loop rounds")
    parser.add_argument("--processes", type=int, default=None, help="cold processes each")
    parser.add_argument("--cold", default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.cold:
        print(json.dumps(cold_child(opts.cold, opts.smoke)))
        return
    sz = sizes(opts.smoke)
    rounds = opts.rounds or sz["rounds"]
    processes = opts.processes or sz["processes"]
    jnp.zeros(()).block_until_ready()
    load_start = os.getloadavg()

    wall = {}
    t0 = time.perf_counter()
    wls = workloads(sz)
    loops = [bench_loop(*w, rounds, entry=not opts.smoke) for w in wls]
    wall["loop"] = time.perf_counter() - t0
    print(f"(a) compiled loop, {rounds} interleaved rounds; per step in us")
    print(f"{'workload':<24}{'S':>7}{'jsvi':>9}{'noskip':>9}{'hand':>9}{'numpyro':>9}"
          f"{'j/hand':>8}{'ns/hand':>8}{'j/np':>8}{'ns/np':>8}{'control':>9}")
    for r in loops:
        p = {k: 1e6 * v for k, v in r["per_step_s"].items()}
        print(f"{r['workload']:<24}{r['steps_per_loop']:>7}" + "".join(
            f"{_num(p.get(k), 2):>9}" for k in ("jsvi", "jsvi_noskip", "hand", "numpyro")
        ) + "".join(
            f"{_num(r.get(k), 3):>8}" for k in
            ("ratio_hand", "ratio_noskip_hand", "ratio_numpyro", "ratio_noskip_numpyro")
        ) + f"{_num(r['control_ratio'], 3):>9}")
    for r in loops:
        extra = r.get("numpyro_entry_points")
        if extra:
            print(f"  {r['workload']}: NumPyro run() from a state {extra['run_from_state_s']:.2f} s "
                  f"(compiles every call), init() {extra['init_s']:.4f} s; jsvi svi_init "
                  f"(compiled) {r['jsvi_svi_init_compiled_s']:.4f} s")

    t0 = time.perf_counter()
    dispatch = bench_dispatch(
        wls[0], sz["dispatch_blocks"], sz["dispatch_calls"], control=not opts.smoke
    )
    wall["dispatch"] = time.perf_counter() - t0
    c = dispatch["calls"]
    print(f"(b) dispatch, {dispatch['workload']}: svi_update "
          f"{1e6 * c['svi_update']['median_s']:.1f} us, bare jit "
          f"{1e6 * c['bare_jit']['median_s']:.1f} us, ratio {dispatch['ratio']:.3f}, "
          f"control {_num(dispatch['control_ratio'], 3)}, "
          f"same params {dispatch['same_params']}")

    names = ("logreg",) if opts.smoke else ("coin", "logreg")
    t0 = time.perf_counter()
    cold = bench_cold(processes, opts.smoke, names)
    wall["first_step"] = time.perf_counter() - t0
    print(f"(c) first step, median over {processes} fresh process(es), s")
    for r in cold:
        print(f"  {r['workload']:<8} svi_init {r['svi_init_s']:.3f}  first svi_update "
              f"{r['first_update_s']:.3f}  second {r['second_update_s']:.5f}  "
              f"(backend start-up {r['backend_start_s']:.3f})")
    print("ratios: medians over interleaved rounds of the per-round ratio; control: the "
          "same program compiled twice (1.000 = perfect resolution).")
    payload = {
        "context": context(),
        "smoke": opts.smoke,
        "sizes": sz | {"rounds": rounds, "processes": processes},
        "optimizer": f"optax.adam({LR})",
        "keys": "jax.random.key(0)",
        "rows": loops,
        "dispatch": dispatch,
        "first_step": cold,
        "wall_s": wall,
        "loadavg": {"start": load_start, "end": os.getloadavg()},
    }
    path = write("step_cost" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
