"""Benchmark scripts run in smoke mode so they do not rot (timings are not checked)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def smoke_env(tmp_path_factory) -> dict[str, str]:
    """The environment of the smoke runs: one JAX persistent compilation cache per
    test process (each pytest-xdist worker has its own base temp folder, so no two
    processes write one cache at once). The scripts share workloads (the suite
    runs the coin, the logistic regression, ... that other scripts run too), so
    later runs load programs an earlier one compiled instead of compiling them."""
    cache = tmp_path_factory.getbasetemp() / "jax-cache"
    return dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )


def run_smoke(script: str, out: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run one benchmark script with ``--smoke --out out``; fail on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("script", ["core_step.py", "partIII_baseline.py", "minibatch.py", "particles.py", "streaming.py", "multidevice.py", "enum_mixture.py", "vae_digits.py", "validation_cost.py", "first_step.py", "step_cost.py", "hmm.py", "iwae.py", "flow_guides.py", "dist_families.py", "sf_variance.py"])
def test_benchmark_smoke(script, tmp_path, smoke_env):
    run_smoke(script, tmp_path, smoke_env)
    (result,) = tmp_path.glob("*.json")
    payload = json.loads(result.read_text())
    assert payload["context"]["jax"] and payload["rows"]


def test_suite_smoke(tmp_path, smoke_env):
    """The whole suite at its smallest sizes; NumPyro and Pyro columns drop out
    when those libraries are not installed."""
    proc = run_smoke("suite.py", tmp_path, smoke_env)
    (result,) = tmp_path.glob("suite-smoke-*.json")
    payload = json.loads(result.read_text())
    assert payload["context"]["jax"] and "loadavg_start" in payload["context"]
    keys = {row["key"] for row in payload["rows"]}
    for key in ("coin", "logreg_full", "logreg_minibatch", "partIII_plain", "partIII_baseline", "vae", "loop_compiled", "loop_python"):
        assert key in keys
    assert any(k.startswith("mixture_") for k in keys) and any(k.startswith("particles_") for k in keys)
    for row in payload["rows"]:
        jsvi = row["contenders"]["jsvi"]
        assert jsvi["median_s"] > 0 and jsvi["correctness"]
    assert result.with_suffix(".md").read_text().startswith("Benchmark suite")
    assert "| workload |" in proc.stdout


def test_suite_gpu_sizes():
    """``--gpu`` refuses a CPU-only JAX unless forced, and picks the large sizes."""
    cmd = [sys.executable, str(BENCH / "suite.py"), "--gpu", "--plan"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        assert "--force" in proc.stderr
    proc = subprocess.run(cmd + ["--force"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)["plan"]
    assert plan["logreg_n"] == 10_000_000 and 10_000_000 in plan["mixture_n"]
    assert plan["vae_batch"] == 4_096
