"""Data larger than memory: Bayesian logistic regression on 10^8 rows x 20 float32
features (8 GB) in a memory-mapped file, streamed to ``svi_run(..., batches=...)``
one contiguous minibatch at a time (default 10^6 rows, 80 MB), against the same
steps on one batch resident on the device.

``svi_run`` reads batch ``i + 1`` from the iterator and starts its copy to the
device while step ``i`` runs, and keeps at most two steps in flight. The question
is what the stream costs on top of the step: target ``streamed / resident <= 1.1``
per step. Both contenders go through the same ``svi_run(batches=...)`` path, in
blocks of ``--steps`` steps that alternate (shuffled order per round); the ratio
is the median of the per-round ratios.

Host memory: the iterator hands out views of the file (no copy of its own) and
drops the pages of batches whose step has finished (``madvise(MADV_DONTNEED)``;
they stay in the OS page cache), so the peak resident set size stays within a few
batches of its value before streaming, however much of the file is read. ``--pages keep`` leaves them
mapped, to show the difference. The script reports both peaks and the bytes
streamed.

The data files are written once (``--data-dir``, default ``/tmp/jsvi-streaming``;
8.4 GB with the defaults, about a minute) and reused when their sizes match.
Results go to ``results/streaming[-TAG]-<device>.json``.

Usage: ``python benchmarks/streaming.py [--smoke] [--rows N] [--batch B]
[--steps S] [--rounds R] [--pages drop|keep] [--data-dir DIR] [--tag TAG]
[--out DIR]``.
"""

from __future__ import annotations

import argparse
import itertools
import mmap
import os
import pathlib
import resource
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import context, write

import jsvi
import jsvi.distributions as dist
from jsvi import constraints

_BLOCK = 1_000_000  # rows drawn once, then permuted for each chunk


def model(x, y, num_rows):
    w = jsvi.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
    b = jsvi.sample("b", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", num_rows, subsample=jnp.arange(x.shape[0])):
        jsvi.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def guide(x, y, num_rows):
    del y, num_rows
    D = x.shape[1]
    w_loc = jsvi.param("w_loc", jnp.zeros(D))
    w_scale = jsvi.param("w_scale", jnp.full(D, 0.1), constraint=constraints.positive)
    jsvi.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
    b_loc = jsvi.param("b_loc", 0.0)
    b_scale = jsvi.param("b_scale", 0.1, constraint=constraints.positive)
    jsvi.sample("b", dist.Normal(b_loc, b_scale))


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mib() -> dict[str, float]:
    """Current resident memory, split into anonymous and file-backed pages."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    return out


def ensure_data(folder: pathlib.Path, N: int, D: int) -> tuple[pathlib.Path, pathlib.Path, bool]:
    """Write ``x`` (N, D) and ``y`` (N,) float32 files once, in chunks of rows (so
    writing needs little memory), and reuse them when their sizes match.

    To write 8 GB in about a minute, the features are drawn once for a block of
    ``_BLOCK`` rows and each chunk is a fresh random permutation of that block's
    rows; labels are drawn afresh for every row from the logistic model. Step
    costs do not depend on the values.
    """
    folder.mkdir(parents=True, exist_ok=True)
    px, py = folder / f"x-{N}x{D}.f32", folder / f"y-{N}.f32"
    if px.exists() and py.exists() and px.stat().st_size == N * D * 4 and py.stat().st_size == N * 4:
        return px, py, False
    rng = np.random.default_rng(0)
    w_true = np.random.default_rng(1).standard_normal(D).astype(np.float32)
    block = rng.standard_normal((min(N, _BLOCK), D), dtype=np.float32)
    tx, ty = px.with_suffix(".tmp"), py.with_suffix(".tmp")
    with open(tx, "wb") as fx, open(ty, "wb") as fy:
        for start in range(0, N, len(block)):
            n = min(len(block), N - start)
            x = block[rng.permutation(len(block))[:n]]
            p = 1 / (1 + np.exp(-(x @ w_true)))
            y = (rng.random(n, dtype=np.float32) < p).astype(np.float32)
            x.tofile(fx)
            y.tofile(fy)
    os.replace(tx, px)  # complete files only: an interrupted write is redone
    os.replace(ty, py)
    return px, py, True


class MemmapBatches:
    """Consecutive batches of ``B`` rows of memory-mapped ``x`` and ``y``, cycling
    through the file. Each batch is a view of the mapping, which ``svi_run`` hands
    to the device (zero-copy on a CPU). The pages of the batch three back, whose
    step has finished, are dropped from this process (they stay in the OS page
    cache), so resident memory does not grow with the bytes read."""

    def __init__(self, px, py, N, D, B, pages="drop"):
        self.pages = pages
        self.x = np.memmap(px, np.float32, "r", shape=(N, D))
        self.y = np.memmap(py, np.float32, "r", shape=(N,))
        self.N, self.B = N, B
        self.num_batches = N // B
        self.position = 0
        self.bytes_read = 0

    def _drop(self, array: np.memmap, batch: int, row_bytes: int) -> None:
        """Drop this process's pages of one batch's rows (whole pages only: one
        shared with a neighbouring batch is dropped too, and simply read again)."""
        handle = getattr(array, "_mmap", None)
        if handle is None or not hasattr(handle, "madvise"):
            return
        page = mmap.PAGESIZE
        start = (batch * self.B * row_bytes) // page * page
        end = ((batch + 1) * self.B * row_bytes) // page * page
        if end > start:
            handle.madvise(mmap.MADV_DONTNEED, start, end - start)

    def __iter__(self):
        while True:
            k = self.position % self.num_batches
            self.position += 1
            # svi_run has finished the step of the batch three back (at most two
            # steps are in flight, and this batch is not yet one of them)
            if self.position > 3 and self.pages == "drop":
                done = (k - 3) % self.num_batches
                self._drop(self.x, done, self.x.shape[1] * 4)
                self._drop(self.y, done, 4)
            rows = slice(k * self.B, (k + 1) * self.B)
            self.bytes_read += self.B * (self.x.shape[1] + 1) * 4
            yield (self.x[rows], self.y[rows], self.N), {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=10, help="blocks per contender")
    parser.add_argument("--data-dir", default="/tmp/jsvi-streaming")
    parser.add_argument(
        "--pages", choices=("drop", "keep"), default="drop",
        help="drop the file's pages once passed (default), or keep them mapped",
    )
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    opts = parser.parse_args()
    scratch = None
    if opts.smoke:
        opts.rows, opts.batch, opts.steps, opts.rounds = 20_000, 1_000, 5, 2
        scratch = tempfile.mkdtemp(prefix="jsvi-streaming-")
        opts.data_dir = scratch
    N, D, B = opts.rows, opts.features, opts.batch
    try:
        t0 = time.perf_counter()
        px, py, written = ensure_data(pathlib.Path(opts.data_dir), N, D)
        write_s = time.perf_counter() - t0
        run(opts, N, D, B, px, py, written, write_s)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def run(opts, N, D, B, px, py, written, write_s) -> None:
    stream = MemmapBatches(px, py, N, D, B, opts.pages)
    (x0, y0, _), _ = next(iter(MemmapBatches(px, py, N, D, B)))
    resident = itertools.repeat(((jax.device_put(np.array(x0)), jax.device_put(np.array(y0)), N), {}))

    svi = jsvi.SVI(model, guide, optax.adam(1e-3), jsvi.Trace_ELBO())
    states = {}
    sources = {"resident": resident, "streamed": iter(stream)}
    for name, batches in sources.items():  # compile, and warm both paths of svi_run
        state, _ = jsvi.svi_run(svi, 0, 3, batches=batches, progress_bar=False)
        state, _ = jsvi.svi_run(
            svi, 0, opts.steps, batches=batches, init_state=state, progress_bar=False
        )
        states[name] = jax.block_until_ready(state)
    rss_before = {"peak": peak_rss_mib(), **rss_now_mib()}
    bytes_before = stream.bytes_read

    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"resident": [], "streamed": []}
    for _ in range(opts.rounds):
        for name in rng.permutation(list(times)):
            t0 = time.perf_counter()
            state, losses = jsvi.svi_run(
                svi, 0, opts.steps, batches=sources[name], init_state=states[name],
                progress_bar=False,
            )
            jax.block_until_ready((state, losses))
            times[name].append((time.perf_counter() - t0) / opts.steps)
            states[name] = state
    rss_after = {"peak": peak_rss_mib(), **rss_now_mib()}
    streamed_bytes = stream.bytes_read - bytes_before

    ratios = np.array(times["streamed"]) / np.array(times["resident"])
    rows = {
        name: {
            "median_step_s": float(np.median(t)),
            "iqr_step_s": [float(np.percentile(t, 25)), float(np.percentile(t, 75))],
        }
        for name, t in times.items()
    }
    rows["streamed"]["ratio_to_resident_median"] = float(np.median(ratios))
    rows["streamed"]["ratio_to_resident_iqr"] = [
        float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))
    ]
    memory = {
        "before_streaming_mib": rss_before,
        "after_streaming_mib": rss_after,
        "streamed_mib": streamed_bytes / 2**20,
        "peak_growth_mib": rss_after["peak"] - rss_before["peak"],
    }
    file_mib = (px.stat().st_size + py.stat().st_size) / 2**20
    print(f"data: {N:,} rows x {D} float32 in {px.parent} ({file_mib:,.0f} MiB; "
          f"{'written in ' + format(write_s, '.0f') + ' s' if written else 'reused'})")
    print(f"batch {B:,} rows ({B * (D + 1) * 4 / 2**20:.1f} MiB), {opts.rounds} rounds "
          f"x {opts.steps} steps per contender")
    print(f"{'mode':<10}{'step ms':>10}{'IQR ms':>18}{'ratio':>8}")
    for name, r in rows.items():
        lo, hi = r["iqr_step_s"]
        ratio = f"{r['ratio_to_resident_median']:.3f}" if "ratio_to_resident_median" in r else "1"
        print(f"{name:<10}{1e3 * r['median_step_s']:>10.2f}{f'{1e3 * lo:.2f}-{1e3 * hi:.2f}':>18}"
              f"{ratio:>8}")
    print(f"streamed {memory['streamed_mib']:,.0f} MiB from the file; peak RSS "
          f"{rss_before['peak']:.0f} MiB before streaming, {rss_after['peak']:.0f} MiB "
          f"after (RssFile now {rss_after.get('RssFile', float('nan')):.0f} MiB)")
    payload = {
        "context": {**context(), "loadavg": os.getloadavg()},
        "smoke": opts.smoke,
        "sizes": {"N": N, "D": D, "B": B, "steps_per_block": opts.steps, "rounds": opts.rounds},
        "pages": opts.pages,
        "data_mib": file_mib,
        "data_written_s": write_s if written else None,
        "rows": rows,
        "memory": memory,
        "target_ratio": 1.1,
    }
    name = "streaming" + ("-smoke" if opts.smoke else "") + (f"-{opts.tag}" if opts.tag else "")
    path = write(name, payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
