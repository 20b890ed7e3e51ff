"""A real multi-process run: the Python blocks of ``docs/multihost.md``, run as two
processes on the loopback address (``jax.distributed`` with gloo collectives),
against the same script run as a single process on all the data.

The doc is the program, so it cannot drift from what is tested. The test appends a
report (the final parameters of the full-data and the subsampled runs, gathered to
every process, and whether the orbax restore is bit-exact, shard by shard) just
before the doc's last block (``jax.distributed.shutdown()``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "multihost.md"
TIMEOUT_S = 120  # per process

_REPORT = '''
import json as _json
import time as _time

import jax.numpy as _jnp
from jax.experimental import multihost_utils as _mh


def _leaf_data(a):
    if _jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        a = jax.random.key_data(a)
    return a


def _same_shards(a, b):
    """Bit-exact, shard by shard, with the same sharding."""
    a, b = _leaf_data(a), _leaf_data(b)
    if a.sharding != b.sharding or a.dtype != b.dtype or a.shape != b.shape:
        return False
    return all(
        sa.index == sb.index and np.array_equal(np.asarray(sa.data), np.asarray(sb.data))
        for sa, sb in zip(a.addressable_shards, b.addressable_shards)
    )


def _full(params):
    return {k: np.asarray(v).tolist() for k, v in _mh.process_allgather(params, tiled=True).items()}


_report = {
    "process_count": jax.process_count(),
    "num_devices": len(jax.devices()),
    "full": _full(jsvi.get_params(svi, state)),
    "sub": _full(jsvi.get_params(svi, state_sub)),
    "z_loc_spec": [str(s.params["z_loc"].sharding.spec) for s in (state, state_sub)],
    "z_loc_fully_addressable": state.params["z_loc"].is_fully_addressable,
}
try:  # one file on one host cannot hold an array spread across processes
    jsvi.save_state(os.environ["CHECKPOINT_DIR"] + ".jsvi", state)
    _report["save_state_refused"] = jax.process_count() == 1
except jsvi.errors.CheckpointError as _e:
    _report["save_state_refused"] = "orbax" in str(_e)
if "restored" in globals():
    _report["restore_exact"] = all(
        jax.tree.leaves(jax.tree.map(_same_shards, state, restored))
    )
    _report["restore_structure"] = jax.tree.structure(restored) == jax.tree.structure(state)
print("REPORT " + _json.dumps(_report), flush=True)
'''


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Proc:
    """A child process whose output goes to files (no pipe can fill and block it)."""

    def __init__(self, script: str, env: dict, folder: pathlib.Path, name: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = folder / f"{name}.out", folder / f"{name}.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", script], env=env, stdout=out, stderr=err
            )
        self.seconds: float | None = None

    def output(self) -> tuple[str, str]:
        return self.out_path.read_text(), self.err_path.read_text()


def _launch(script: str, num: int, ckpt: pathlib.Path) -> list[_Proc]:
    port = _free_port()
    procs = []
    for pid in range(num):
        env = dict(
            os.environ,
            COORDINATOR=f"127.0.0.1:{port}",
            NUM_PROCESSES=str(num),
            PROCESS_ID=str(pid),
            CHECKPOINT_DIR=str(ckpt),
            JAX_PLATFORMS="cpu",
        )
        procs.append(_Proc(script, env, ckpt.parent / "logs", f"{ckpt.name}-{pid}"))
    return procs


def _collect(procs: list[_Proc], start: float) -> list[dict]:
    """Each process's report. Stops at the first failure or at the time limit, and
    ends every process before it returns or raises (a failed process would
    otherwise leave its peer waiting on a collective)."""
    try:
        while True:
            elapsed = time.perf_counter() - start
            for p in procs:
                code = p.popen.poll()
                if code is not None and p.seconds is None:
                    p.seconds = elapsed
                if code not in (None, 0):
                    raise AssertionError(
                        f"process {p.out_path.stem} exited with {code}:\n"
                        + p.output()[1][-3000:]
                    )
            if all(p.seconds is not None for p in procs):
                break
            if elapsed > TIMEOUT_S:
                raise AssertionError(
                    f"processes still running after {TIMEOUT_S} s; stderr of the first:\n"
                    + procs[0].output()[1][-3000:]
                )
            time.sleep(0.2)
    finally:
        for p in procs:  # never leave a process behind, whatever failed
            if p.popen.poll() is None:
                p.popen.kill()
                p.popen.wait()
    reports = []
    for p in procs:
        out, err = p.output()
        lines = [ln for ln in out.splitlines() if ln.startswith("REPORT ")]
        assert lines, f"no report in the output:\n{out[-2000:]}\n{err[-2000:]}"
        report = json.loads(lines[-1][len("REPORT ") :])
        report["seconds"] = p.seconds
        reports.append(report)
    return reports


def _assert_params_close(got: dict, want: dict) -> None:
    """Float32 agreement. Sharded and single-process runs differ only in how the
    sums over the plate are grouped (per shard, then across shards); each grouping
    changes a sum by a few float32 ulps (eps = 1.2e-7) of its terms' magnitude, and
    20 SGD steps at lr 1e-3 on this convex loss do not amplify that. So 1e-5 of
    each parameter's largest magnitude (about 80 ulps) bounds the difference."""
    assert got.keys() == want.keys()
    for name in want:
        g, w = np.asarray(got[name]), np.asarray(want[name])
        scale = max(1.0, float(np.max(np.abs(w))))
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * scale, err_msg=name)


def test_orbax_is_installed():
    """Skipped where ``orbax-checkpoint`` is missing: then the orbax round trips of
    this module and ``test_sharded_checkpoints.py`` did not run."""
    pytest.importorskip("orbax.checkpoint")


def test_doc_blocks_form_the_script():
    blocks = doc_blocks()
    assert blocks[-1].strip() == "jax.distributed.shutdown()"
    assert "jax.distributed.initialize(" in blocks[0]
    assert any("make_array_from_process_local_data" in b for b in blocks)


def _script(with_orbax: bool) -> str:
    """The doc's blocks with the report before the last one; without orbax
    installed, the doc's orbax block is left out (and its checks skipped)."""
    blocks = doc_blocks()
    if not with_orbax:
        blocks = [b for b in blocks if "import orbax" not in b]
    return "\n".join(blocks[:-1]) + _REPORT + blocks[-1]


def test_doc_script_on_two_processes_equals_one_process_on_all_the_data(tmp_path):
    """One test for the whole run (full data, subsampled plate, orbax), so that the
    processes start once even when pytest-xdist spreads tests over workers."""
    with_orbax = importlib.util.find_spec("orbax") is not None
    script = _script(with_orbax)
    start = time.perf_counter()
    procs = _launch(script, 2, tmp_path / "two") + _launch(script, 1, tmp_path / "one")
    reports = _collect(procs, start)
    pair, single = reports[:2], reports[2]

    assert [r["process_count"] for r in pair] == [2, 2]
    assert single["process_count"] == 1
    assert pair[0]["num_devices"] == 2 * single["num_devices"]
    for r in pair:
        assert r["seconds"] < TIMEOUT_S
        _assert_params_close(r["full"], single["full"])
        # subsampled plate: the same indices on both processes (same key)
        _assert_params_close(r["sub"], single["sub"])
    # the same values on both processes, bit for bit (same program, same key)
    assert pair[0]["full"] == pair[1]["full"]
    assert pair[0]["sub"] == pair[1]["sub"]
    # the subsampled run really differs from the full-data one
    assert not np.allclose(single["sub"]["w_loc"], single["full"]["w_loc"])
    for r in pair:  # per-row params split across the processes
        assert r["z_loc_spec"] == ["P('data',)"] * 2
        assert not r["z_loc_fully_addressable"]
        assert r["save_state_refused"]  # with a CheckpointError that names orbax

    if not with_orbax:  # the orbax block was left out (see test_orbax_is_installed)
        return
    for r in pair:  # async orbax save and restore of that sharded state, bit-exact
        assert r["restore_structure"]
        assert r["restore_exact"]
