"""Shared timing harness for the benchmark scripts (not a test module).

Times compile (first call) and steady state separately; steady state interleaves the
contenders in repeated blocks and reports the median and IQR of per-call times, each
call ended with ``jax.block_until_ready``.
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
) -> dict[str, dict[str, float]]:
    """Per-call seconds for each contender: blocks of ``calls`` calls, interleaved,
    after ``warmup`` untimed calls each.

    ``calls_for`` overrides ``calls`` for the contenders it names (a slow one can
    take fewer calls per block and still sit in every block).
    """
    calls_for = calls_for or {}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up
        for _ in range(warmup):
            jax.block_until_ready(fn())
    for b in range(blocks):
        order = list(contenders.items())
        if b % 2:
            order.reverse()
        for name, fn in order:
            for _ in range(calls_for.get(name, calls)):
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        a = np.asarray(ts)
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        out[name] = {"median_s": float(med), "iqr_s": float(q3 - q1), "min_s": float(a.min()), "n": int(a.size)}
    return out


def write(name: str, payload: dict[str, Any], out_dir: str | None = None) -> pathlib.Path:
    directory = pathlib.Path(out_dir) if out_dir else RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{device_tag()}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
