"""Shared timing harness for the benchmark scripts (not a test module).

Times compile (first call) and steady state separately; steady state interleaves the
contenders call by call, in shuffled order, and reports the median and IQR of per-call
times, each call ended with ``jax.block_until_ready``, and paired per-round ratios.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def context() -> dict[str, Any]:
    """Machine, device, versions, dtype and git SHA for a result file."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=pathlib.Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sha = "unknown"
    dev = jax.devices()[0]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": sha,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', dev.platform)}",
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
        "dtype": "float64" if jax.config.jax_enable_x64 else "float32",
        "python": platform.python_version(),
    }


def device_tag() -> str:
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", dev.platform)
    return f"{dev.platform}-{kind}".replace(" ", "_").lower()


def time_first_call(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def interleaved(
    contenders: dict[str, Callable[[], Any]],
    *,
    blocks: int,
    calls: int,
    calls_for: dict[str, int] | None = None,
    warmup: int = 3,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per-call seconds for each contender, measured side by side call by call.

    After ``warmup`` untimed calls each, ``blocks * calls`` rounds follow; in each
    round every contender makes one timed call, in an order shuffled per round
    (fixed ``seed``). ``calls_for`` gives a contender fewer calls per ``calls``
    rounds: it takes part in that share of the rounds, spread evenly (a slow one
    still sits among the others throughout).

    Interleaving call by call makes all contenders see the same machine: on a
    shared CPU the per-call time drifts by 2x or more within seconds, and blocks
    of consecutive calls, each contender in turn, then give ratios off by as much.
    Two copies of one step, timed this way, agree within 1-2%.

    Returns, per contender: ``median_s``, ``iqr_s``, ``min_s``, ``n`` and ``paired``,
    which maps each other contender to the median over shared rounds of the ratio
    of this contender's time to the other's (the headline ratio: it compares calls
    made milliseconds apart).
    """
    calls_for = calls_for or {}
    names = list(contenders)
    rounds = blocks * calls
    share = {n: blocks * calls_for.get(n, calls) for n in names}
    times = {n: np.full(rounds, np.nan) for n in names}
    for fn in contenders.values():  # warm-up
        for _ in range(warmup):
            jax.block_until_ready(fn())
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        present = [n for n in names if (r + 1) * share[n] // rounds > r * share[n] // rounds]
        for i in rng.permutation(len(present)):
            name = present[i]
            fn = contenders[name]
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name][r] = time.perf_counter() - t0
    out: dict[str, dict[str, Any]] = {}
    for name, ts in times.items():
        a = ts[~np.isnan(ts)]
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        paired = {}
        for other in names:
            if other != name:
                both = ~np.isnan(ts) & ~np.isnan(times[other])
                if both.any():
                    paired[other] = float(np.median(ts[both] / times[other][both]))
        out[name] = {
            "median_s": float(med),
            "iqr_s": float(q3 - q1),
            "min_s": float(a.min()),
            "n": int(a.size),
            "paired": paired,
        }
    return out


def write(name: str, payload: dict[str, Any], out_dir: str | None = None) -> pathlib.Path:
    directory = pathlib.Path(out_dir) if out_dir else RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{device_tag()}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
