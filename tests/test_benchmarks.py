"""Benchmark scripts run in smoke mode so they do not rot (timings are not checked)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["core_step.py", "partIII_baseline.py", "minibatch.py", "particles.py", "streaming.py", "multidevice.py", "enum_mixture.py", "vae_digits.py"])
def test_benchmark_smoke(script, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = tmp_path.glob("*.json")
    payload = json.loads(result.read_text())
    assert payload["context"]["jax"] and payload["rows"]
