"""What the model/guide checks cost: the observed-value support flags in
``svi_update``, and the checks in ``svi_init``.

For the coin and a 50,000 x 20 Bayesian logistic regression, two ``SVI`` objects
differ only in ``validate`` (True: ``svi_init`` runs every check of
``jsvi.validate``, and each compiled step computes a support flag per observed
site and rejects a step whose data fail it; False: none of this). Reported, side
by side in one run:

- whether the compiled ``svi_update`` programs are identical (their optimized HLO
  text, compared after removing the module name): they are not, by the flags;
- steady-state per-step time of each, interleaved, and their ratio (the cost of
  the support flags; target <= 1.03 on the logistic regression), with a control:
  a second unchecked ``SVI`` (the same program compiled again) against the first;
- the same for the compiled loop (``svi_run(..., progress_bar=False)`` from a
  ready state), where the flags are computed once per compiled chunk, not per
  step;
- ``svi_init`` time (compile included) with and without the checks, and the time of
  ``jsvi.validate`` on its own.

Results go to ``results/validation_cost-<device>.json``.

Usage: ``python benchmarks/validation_cost.py [--smoke] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import context, interleaved, write
from core_step import coin_guide, coin_model, logreg_guide, logreg_model

import jsvi
from jsvi._args import split_args


def _hlo(svi: jsvi.SVI, state: jsvi.SVIState, data: tuple) -> str:
    dynamic, spec = split_args(data, {}, "bench")
    text = svi.compiled.update.lower(state, dynamic, spec).compile().as_text()
    # Compare instructions only: drop source locations (they name the call site).
    text = re.sub(r", metadata=\{[^}]*\}", "", text)
    lines = [ln for ln in text.splitlines() if not re.match(r"^\d+ \{", ln)]
    return re.sub(r"HloModule \S+", "HloModule m", "\n".join(lines))


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t0, out


def bench(name: str, model, guide, data: tuple, blocks: int, calls: int) -> dict:
    svis = {
        flag: jsvi.SVI(model, guide, optax.adam(1e-3), jsvi.Trace_ELBO(), validate=flag)
        for flag in (True, False)
    }
    # the control: validate=False again, a distinct SVI compiled on its own
    svis["again"] = jsvi.SVI(
        model, guide, optax.adam(1e-3), jsvi.Trace_ELBO(), validate=False
    )
    # svi_init on a fresh SVI each: each pays its own compile, as a user would.
    init_s, states = {}, {}
    for flag in (False, True):
        init_s[flag], states[flag] = _timed(
            lambda f=flag: jsvi.svi_init(svis[f], jax.random.key(0), *data)
        )
    states["again"] = jsvi.svi_init(svis["again"], jax.random.key(0), *data)
    validate_s, _ = _timed(lambda: jsvi.validate(model, guide, *data, loss=jsvi.Trace_ELBO()))
    same_hlo = _hlo(svis[True], states[True], data) == _hlo(svis[False], states[False], data)
    box = dict(states)

    def runner(flag):
        def run():
            box[flag], loss = jsvi.svi_update(svis[flag], box[flag], *data)
            return loss

        return run

    stats = interleaved(
        {"checked": runner(True), "unchecked": runner(False), "again": runner("again")},
        blocks=blocks,
        calls=calls,
    )
    loop_steps = max(1, 20 * calls)

    def looper(flag):
        def run():
            return jsvi.svi_run(svis[flag], 0, loop_steps, *data, progress_bar=False,
                                init_state=states[flag])[1]

        return run

    loops = interleaved(
        {"checked": looper(True), "unchecked": looper(False), "again": looper("again")},
        blocks=1,
        calls=max(3, blocks),
    )
    return {
        "workload": name,
        "identical_update_hlo": same_hlo,
        "steady": stats,
        "update_ratio_median": stats["checked"]["paired"]["unchecked"],
        "update_control_ratio": stats["again"]["paired"]["unchecked"],
        "loop": loops,
        "loop_steps": loop_steps,
        "loop_ratio_median": loops["checked"]["paired"]["unchecked"],
        "loop_control_ratio": loops["again"]["paired"]["unchecked"],
        "svi_init_s": {"checked": init_s[True], "unchecked": init_s[False]},
        "validate_s": validate_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    parser.add_argument("--out", default=None, help="results directory")
    opts = parser.parse_args()
    n, blocks, calls = (2_000, 2, 5) if opts.smoke else (50_000, 10, 20)
    coin = (jnp.array([1.0] * 6 + [0.0] * 4),)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, 20)), jnp.float32)
    y = jnp.asarray(rng.random(n) < 0.5, jnp.float32)
    rows = [
        bench("coin", coin_model, coin_guide, coin, blocks, calls),
        bench(f"logreg {n}x20", logreg_model, logreg_guide, (x, y), blocks, calls),
    ]
    print(f"{'workload':<18}{'same HLO':>9}{'step ratio':>12}{'control':>9}"
          f"{'loop ratio':>12}{'control':>9}{'init on (s)':>13}"
          f"{'init off (s)':>14}{'validate (s)':>14}")
    for r in rows:
        print(f"{r['workload']:<18}{str(r['identical_update_hlo']):>9}"
              f"{r['update_ratio_median']:>12.3f}{r['update_control_ratio']:>9.3f}"
              f"{r['loop_ratio_median']:>12.3f}{r['loop_control_ratio']:>9.3f}"
              f"{r['svi_init_s']['checked']:>13.3f}"
              f"{r['svi_init_s']['unchecked']:>14.3f}{r['validate_s']:>14.3f}")
    payload = {"context": context(), "smoke": opts.smoke, "rows": rows}
    path = write("validation_cost" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
