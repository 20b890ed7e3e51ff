"""The benchmark suite: every workload, every library, one command, one table.

Usage::

    python benchmarks/suite.py [--quick | --smoke | --gpu [--force]] [--out DIR]
                               [--only coin,logreg,...] [--plan]

Workloads (keys for ``--only``):

1. ``coin``: Beta-Bernoulli coin (10 flips), Beta guide.
2. ``logreg``: Bayesian logistic regression, 50,000 x 20, mean-field Normal guide,
   full batch and minibatch B = 1,000 (plate subsampling).
3. ``partIII``: Pyro's SVI Part III experiment: score-function coin with and
   without a decaying-average baseline; steps to converge, median over seeds.
4. ``mixture``: 3-component Gaussian mixture with the assignments enumerated
   (``TraceEnum_ELBO``), N = 1,000 and 100,000.
5. ``particles``: the logistic regression (N = 5,000) with 1, 8, 64, 512
   vectorized particles.
6. ``vae``: the digits VAE of ``examples/vae_digits.py``.
7. ``loop``: a whole 5,000-step coin fit, as one compiled loop (``svi_run``) and
   as a Python loop of ``svi_update``.

Contenders, side by side in the same process: jsvi, hand-written JAX (where there
is one: ``_handwritten.py`` and the scripts' ``hand`` steps), NumPyro and Pyro
(PyTorch on the CPU, ``torch.set_num_threads(os.cpu_count())``, the JAX CPU
client's thread count; Pyro's argument validation off; ``OMP_WAIT_POLICY=PASSIVE``
unless set, see below). Model definitions come
from the single-workload scripts (``core_step.py``, ``minibatch.py``,
``particles.py``, ``partIII_baseline.py``, ``enum_mixture.py``,
``vae_digits.py``) and ``_pyro.py``; timing from ``_harness.py``: the first call
(compile) is timed on its own, from cold (JAX's caches cleared before each
contender's first call, after one warm-up compile for the whole process), then
the contenders run interleaved in repeated
blocks, each call ended by ``jax.block_until_ready``; min and median per step are
reported. Every contender also gets a correctness figure from the same run, so a
fast wrong answer shows: the coin's posterior mean and sd against the exact
Beta(16, 14) (0.5333, 0.0896); -ELBO per data point (mean of the losses of the
steps after timing) for logistic regression and particles, all contenders having
taken the same number of steps from the same initial values; the
log-likelihood per point for the mixture (exact, the assignments are summed
out); the held-out ELBO for the VAE; steps to converge for Part III.

Missing libraries drop their columns with a note: with only the ``test`` extra
installed (no NumPyro, funsor, torch or Pyro) the suite still runs. To add Pyro,
install torch with the CPU pin first (plain ``pip install torch`` pulls a
multi-GB CUDA build), then Pyro::

    pip install torch==2.13.0   # the CPU wheel
    pip install pyro-ppl        # or: pip install -e ".[bench]"

Modes: default = the sizes above (5 to 8 minutes on a 2-core CPU); ``--quick``
= small sizes and few steps (under 2 minutes); ``--smoke`` = tiny, for CI;
``--gpu`` = accelerator sizes (logistic regression N = 10,000,000, mixture
N = 10,000,000, VAE batch 4,096 on the training images tiled 16 times); it
refuses to run on a CPU-only JAX unless ``--force``. Pyro runs on torch's CPU in
every mode, so under ``--gpu`` its columns are left out of the workloads with
GPU-sized data. ``--plan`` prints the sizes a mode would use and exits.

On a machine shared with other work, torch's OpenMP workers spinning while idle
(the default) slowed Pyro's median coin step from about 1.5 ms to 16 ms here, so
the suite sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set.

Output: ``results/suite[-quick|-smoke|-gpu]-<device>.json`` (context from
``_harness.context()`` plus library versions and load averages), the Markdown
table in ``.md`` and a plot of per-step time ratios in ``.png`` next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# Before torch loads OpenMP: idle OpenMP workers sleep instead of spinning. On a
# shared machine, spinning workers compete with the other processes and Pyro's
# median step time grows tenfold; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _handwritten import make_step, norm_lp  # noqa: E402
from _harness import RESULTS, context, device_tag, interleaved, time_first_call  # noqa: E402

import jsvi  # noqa: E402

WORKLOADS = ("coin", "logreg", "partIII", "mixture", "particles", "vae", "loop")
CONTENDERS = ("jsvi", "hand", "numpyro", "pyro")
LABELS = {
    "jsvi": "jsvi",
    "hand": "hand-written JAX",
    "numpyro": "NumPyro",
    "pyro": "Pyro",
}
COIN_DATA = [1.0] * 6 + [0.0] * 4
COIN_EXACT = (16.0, 14.0)  # Beta(10, 10) prior, 6 heads, 4 tails
COIN_LR = 3e-3  # converges within the timed steps, final noise ~0.01 in the mean
LOGREG_LR = 1e-3  # as in core_step.py, minibatch.py and particles.py


def _have(*modules: str) -> bool:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return False
    return True


def _version(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except (ImportError, AttributeError):
        return None


HAVE_NUMPYRO = _have("numpyro")
HAVE_FUNSOR = HAVE_NUMPYRO and _have("funsor")
HAVE_PYRO = _have("torch", "pyro")


def _load_vae_bench():
    """``benchmarks/vae_digits.py`` under another name: it imports the example of
    the same name (``examples/vae_digits.py``) as ``vae_digits``."""
    spec = importlib.util.spec_from_file_location(
        "bench_vae_digits", HERE / "vae_digits.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- sizes ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    mode: str
    blocks: int  # interleaved blocks per workload
    calls: int  # calls per contender per block
    coin_calls: int
    tail: int  # steps after timing whose mean loss is the correctness figure
    logreg_n: int
    logreg_d: int
    batch: int
    mixture_n: tuple[int, ...]
    mixture_calls: int
    particles: tuple[int, ...]
    particles_n: int
    seeds: int
    max_steps: int
    pyro_seeds: int
    grad_variance: bool  # jsvi's gradient variance at init (Part III), slow to compile
    vae_hidden: int
    vae_steps: int
    vae_lr: float
    vae_batch: int
    vae_tile: int  # training images repeated this many times (so a batch fits)
    vae_draws: int
    vae_calls: int
    loop_steps: int
    loop_repeats: int
    pyro_loop_steps: int
    pyro_max_rows: int  # Pyro (CPU) is left out of workloads with more data rows
    # JAX's caches cleared before each contender's first call (each compiles from
    # cold), rather than once per workload (later contenders may then reuse
    # traces of shared inner functions, and nothing compiles twice)
    cold: bool = True
    second_call: bool = True  # time a second call too (one that compiles again shows)

    @property
    def timing(self) -> dict[str, bool]:
        """``measure``'s options for this mode."""
        return {"cold": self.cold, "second": self.second_call}


# fmt: off
PLANS = {
    "smoke": Plan(
        mode="smoke", blocks=2, calls=3, coin_calls=5, tail=3,
        logreg_n=2_000, logreg_d=5, batch=100, mixture_n=(500,), mixture_calls=3,
        particles=(8,), particles_n=500, seeds=2, max_steps=200, pyro_seeds=1, grad_variance=False,
        vae_hidden=32, vae_steps=20, vae_lr=3e-3, vae_batch=64, vae_tile=1,
        vae_draws=3, vae_calls=3, loop_steps=50, loop_repeats=1, pyro_loop_steps=20,
        pyro_max_rows=10**9, cold=False, second_call=False,
    ),
    "quick": Plan(
        mode="quick", blocks=3, calls=20, coin_calls=100, tail=20,
        logreg_n=10_000, logreg_d=20, batch=1_000, mixture_n=(1_000,),
        mixture_calls=10, particles=(1, 512), particles_n=1_000, seeds=8,
        max_steps=3_000, pyro_seeds=1, grad_variance=False, vae_hidden=64,
        vae_steps=100, vae_lr=3e-3, vae_batch=128, vae_tile=1, vae_draws=5, vae_calls=10,
        loop_steps=1_000, loop_repeats=1, pyro_loop_steps=200, pyro_max_rows=10**9,
        cold=False, second_call=False,
    ),
    "full": Plan(
        mode="full", blocks=10, calls=50, coin_calls=200, tail=50,
        logreg_n=50_000, logreg_d=20, batch=1_000, mixture_n=(1_000, 100_000),
        mixture_calls=20, particles=(1, 8, 64, 512), particles_n=5_000, seeds=20,
        max_steps=10_000, pyro_seeds=10, grad_variance=True, vae_hidden=256, vae_steps=5_000, vae_lr=1e-3,
        vae_batch=128, vae_tile=1, vae_draws=100, vae_calls=50, loop_steps=5_000,
        loop_repeats=5, pyro_loop_steps=1_000, pyro_max_rows=10**9,
    ),
    "gpu": Plan(
        mode="gpu", blocks=10, calls=50, coin_calls=200, tail=50,
        logreg_n=10_000_000, logreg_d=20, batch=1_000, mixture_n=(100_000, 10_000_000),
        mixture_calls=20, particles=(1, 8, 64, 512), particles_n=5_000, seeds=20,
        max_steps=10_000, pyro_seeds=10, grad_variance=True, vae_hidden=256, vae_steps=5_000, vae_lr=1e-3,
        vae_batch=4_096, vae_tile=16, vae_draws=100, vae_calls=50, loop_steps=5_000,
        loop_repeats=5, pyro_loop_steps=1_000, pyro_max_rows=1_000_000,
    ),
}
# fmt: on


# --- contenders and timing --------------------------------------------------------------


@dataclasses.dataclass
class Contender:
    step: Callable[[], Any]  # one step (or one whole loop); returns the loss(es)
    init_s: float | None = None  # setup time before the first step, if separate
    summary: Callable[[], dict[str, Any]] | None = None  # extra figures after timing
    steps_per_call: int = 1


def warm_up_compiler() -> None:
    """Compile and run one small program with a loop and a random draw, so the
    process's one-time costs (backend and compiler start-up) fall on no
    contender's first call."""

    @jax.jit
    def f(key, x):
        y = jax.lax.fori_loop(0, 3, lambda i, y: y + jax.random.normal(key), x)
        return jax.grad(lambda z: jnp.sum(jnp.sin(z) * y))(x)

    jax.block_until_ready(f(jax.random.key(0), jnp.ones(3)))
    jax.clear_caches()


def _last(value: Any) -> float:
    if isinstance(value, tuple):
        value = value[-1]
    return float(np.asarray(value).reshape(-1)[-1])


def measure(
    contenders: dict[str, Contender],
    *,
    blocks: int,
    calls: int,
    calls_for: dict[str, int] | None = None,
    tail: int = 0,
    warmup: int = 3,
    cold: bool = True,
    second: bool = True,
) -> dict[str, dict[str, Any]]:
    """First and second call, ``warmup`` more, the interleaved steady state, then
    ``tail`` more steps each.

    JAX's caches are cleared before each first call, so each contender compiles
    from cold: otherwise whoever goes later reuses the traces of the inner jitted
    functions (``jax.random``'s samplers and hashes) that an earlier setup or
    first call made, and its first call looks cheaper than a user's would.
    (Contenders whose compiled step is dropped compile again in the untimed
    warm-up.) With ``cold=False`` (quick and smoke modes) the caches are cleared
    once, before the first contender: nothing compiles twice, and a later
    contender's first call can only look cheaper than from cold.
    """
    first, second_s, first_loss = {}, {}, {}
    for name, c in contenders.items():
        box: dict[str, Any] = {}

        def call(c=c, box=box):
            box["value"] = c.step()
            return box["value"]

        if cold or not first:
            jax.clear_caches()
        first[name] = time_first_call(call)
        first_loss[name] = _last(box["value"])
        # a second call that compiles again (e.g. weak types) shows here
        second_s[name] = time_first_call(c.step) if second else None
    stats = interleaved(
        {n: c.step for n, c in contenders.items()},
        blocks=blocks,
        calls=calls,
        calls_for=calls_for,
        warmup=warmup,
    )
    out = {}
    for name, c in contenders.items():
        losses = [_last(c.step()) for _ in range(tail)]
        s, k = stats[name], c.steps_per_call
        rec: dict[str, Any] = {
            "init_s": c.init_s,
            "first_call_s": first[name],
            "second_call_s": second_s[name],
            "name": name,
            "median_s": s["median_s"] / k,
            "min_s": s["min_s"] / k,
            # per-step ratio of this contender's time to each other's, call by call
            "paired": {
                other: r * contenders[other].steps_per_call / k
                for other, r in s["paired"].items()
            },
            "iqr_s": s["iqr_s"] / k,
            "n": s["n"],
            "steps_per_call": k,
            "steps_taken": (1 + int(second) + warmup + s["n"] + tail) * k,
            "first_loss": first_loss[name],
        }
        if tail:
            rec["final_loss"] = float(np.mean(losses))
        if c.summary is not None:
            rec.update(c.summary())
        out[name] = rec
    return out


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = jax.block_until_ready(fn())
    return value, time.perf_counter() - t0


def jsvi_contender(svi, *args, summary=None, **kwargs) -> Contender:
    state, init_s = _timed(
        lambda: jsvi.svi_init(svi, jax.random.key(0), *args, **kwargs)
    )
    box = {"state": state}

    def step():
        box["state"], loss = jsvi.svi_update(svi, box["state"], *args, **kwargs)
        return loss

    return Contender(
        step,
        init_s,
        (lambda: summary(jsvi.get_params(svi, box["state"]))) if summary else None,
    )


def strong(tree):
    """The tree with weakly typed leaves made concrete: a weakly typed initial
    state (``jnp.log(15.0)``) would make a jitted step compile again after its
    first call, when its outputs come back strongly typed."""

    def leaf(x):
        if getattr(x, "weak_type", False):
            return jnp.asarray(x, dtype=x.dtype)
        return x

    return jax.tree.map(leaf, tree)


def hand_contender(built, *data, summary=None) -> Contender:
    t0 = time.perf_counter()
    step_fn, state = built()
    box = {"state": strong(state)}

    def step():
        u, o, k, loss = step_fn(*box["state"], *data)
        box["state"] = (u, o, k)
        return loss

    init_s = time.perf_counter() - t0
    return Contender(
        step, init_s, (lambda: summary(box["state"][0])) if summary else None
    )


def numpyro_contender(svi, *args, summary=None, update=None) -> Contender:
    state, init_s = _timed(lambda: svi.init(jax.random.key(0), *args))
    update = update or jax.jit(svi.update)
    box = {"state": state}

    def step():
        box["state"], loss = update(box["state"], *args)
        return loss

    return Contender(
        step,
        init_s,
        (lambda: summary(svi.get_params(box["state"]))) if summary else None,
    )


def built_contender(build: Callable[[], Callable[[], Any]]) -> Contender:
    """A contender from a script's builder that returns only a step closure."""
    step, init_s = _timed(build)
    return Contender(step, init_s)


# --- correctness figures ------------------------------------------------------------------


def beta_summary(a: float, b: float) -> dict[str, float]:
    a, b = float(a), float(b)
    mean = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    ea, eb = COIN_EXACT
    exact_mean = ea / (ea + eb)
    exact_sd = math.sqrt(ea * eb / ((ea + eb) ** 2 * (ea + eb + 1)))
    return {
        "posterior_mean": mean,
        "posterior_sd": sd,
        "abs_err_mean": abs(mean - exact_mean),
        "abs_err_sd": abs(sd - exact_sd),
        "correctness": f"mean {mean:.4f} sd {sd:.4f}",
    }


def per_point(recs: dict[str, dict], n: int, label: str, sign: float = 1.0) -> None:
    for rec in recs.values():
        value = sign * rec["final_loss"] / n
        rec["correctness_value"] = value
        rec["correctness"] = f"{label} {value:.4f}"


# --- NumPyro pieces that the single-workload scripts do not have -------------------------------


def numpyro_coin_svi(opt, *, score_function: bool = False):
    """The coin in NumPyro; ``score_function`` gives Part III's setting (a Beta
    guide without reparameterized sampling, ``TraceGraph_ELBO``, no baseline:
    NumPyro has no baselines)."""
    import numpyro  # noqa: PLC0415
    import numpyro.distributions as nd  # noqa: PLC0415
    from numpyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO  # noqa: PLC0415

    class ScoreBeta(nd.Beta):
        reparametrized_params = []  # has_rsample False: score-function gradients

    guide_beta = ScoreBeta if score_function else nd.Beta

    def model(data):
        f = numpyro.sample("f", nd.Beta(10.0, 10.0))
        with numpyro.plate("data", data.shape[0]):
            numpyro.sample("obs", nd.Bernoulli(f), obs=data)

    def guide(data):
        del data
        a = numpyro.param("a", 15.0, constraint=nd.constraints.positive)
        b = numpyro.param("b", 15.0, constraint=nd.constraints.positive)
        numpyro.sample("f", guide_beta(a, b))

    return SVI(model, guide, opt, TraceGraph_ELBO() if score_function else Trace_ELBO())


def numpyro_steps_to_converge(svi, data, seeds: int, max_steps: int, target, tolerance):
    """NumPyro's version of ``partIII_baseline.steps_to_converge``: all seeds at
    once, ``vmap`` of ``update`` inside ``lax.scan``."""
    keys = jax.random.split(jax.random.key(0), seeds)
    inits = [svi.init(k, data) for k in keys]
    states = jax.tree.map(lambda *xs: jnp.stack(xs), *inits)

    @jax.jit
    def run(states):
        def body(st, _):
            st, _ = jax.vmap(lambda s: svi.update(s, data))(st)
            p = jax.vmap(svi.get_params)(st)
            return st, jnp.stack([p["a"], p["b"]], -1)

        return jax.lax.scan(body, states, None, length=max_steps)

    t0 = time.perf_counter()
    _, trajectory = run(states)
    jax.block_until_ready(trajectory)
    seconds = time.perf_counter() - t0
    close = np.all(
        np.abs(np.asarray(trajectory) - np.asarray(target)) < tolerance, axis=-1
    )
    hit = close.any(0)
    steps = np.where(hit, close.argmax(0) + 1, max_steps)
    return {
        "steps": steps.tolist(),
        "converged": int(hit.sum()),
        "median_steps": float(np.median(steps)),
        "seconds_all_seeds": seconds,
    }


# --- workloads -------------------------------------------------------------------------------


def _row(key, workload, size, recs, notes, **extra) -> dict[str, Any]:
    return {
        "key": key,
        "workload": workload,
        "size": size,
        "contenders": recs,
        "notes": notes,
        **extra,
    }


def _skip_notes(numpyro=True, pyro=True, funsor=False) -> list[str]:
    notes = []
    if numpyro and not HAVE_NUMPYRO:
        notes.append("NumPyro not installed: column skipped")
    elif funsor and not HAVE_FUNSOR:
        notes.append("funsor not installed: NumPyro column skipped")
    if pyro and not HAVE_PYRO:
        notes.append("torch/Pyro not installed: column skipped")
    return notes


_COIN: dict[str, Any] = {}


def coin_pieces() -> dict[str, Any]:
    """The coin's data, jsvi ``SVI``, hand-written step and NumPyro ``SVI``, built
    once: the ``loop`` workload reuses what ``coin`` compiled."""
    if not _COIN:
        import core_step  # noqa: PLC0415

        opt = optax.adam(COIN_LR)
        hand_step, hand_init = core_step.coin_hand(opt)
        _COIN.update(
            data=jnp.array(COIN_DATA),
            svi=jsvi.SVI(
                core_step.coin_model, core_step.coin_guide, opt, jsvi.Trace_ELBO()
            ),
            hand=(hand_step, strong(hand_init)),
        )
        if HAVE_NUMPYRO:
            np_svi = numpyro_coin_svi(opt)
            _COIN.update(numpyro=np_svi, numpyro_update=jax.jit(np_svi.update))
    return _COIN


def w_coin(plan: Plan) -> list[dict]:
    pieces = coin_pieces()
    data = pieces["data"]
    cs = {
        "jsvi": jsvi_contender(
            pieces["svi"], data, summary=lambda p: beta_summary(p["a"], p["b"])
        ),
        "hand": hand_contender(
            lambda: pieces["hand"],
            data,
            summary=lambda u: beta_summary(jnp.exp(u["a"]), jnp.exp(u["b"])),
        ),
    }
    if HAVE_NUMPYRO:
        cs["numpyro"] = numpyro_contender(
            pieces["numpyro"],
            data,
            summary=lambda p: beta_summary(p["a"], p["b"]),
            update=pieces["numpyro_update"],
        )
    if HAVE_PYRO:
        import _pyro  # noqa: PLC0415

        step, posterior = _pyro.coin(np.asarray(data), COIN_LR)
        cs["pyro"] = Contender(step, None, lambda: beta_summary(*posterior()))
    recs = measure(cs, blocks=plan.blocks, calls=plan.coin_calls, tail=plan.tail, **plan.timing)
    return [_row("coin", "coin (Beta-Bernoulli, 10 flips)", "", recs, _skip_notes())]


def _logreg_data(n: int, d: int):
    key_x, key_w = jax.random.split(jax.random.key(42))
    X = jax.random.normal(key_x, (n, d))
    y = (X @ jax.random.normal(key_w, (d,)) > 0).astype(jnp.float32)
    return X, y


def w_logreg(plan: Plan) -> list[dict]:
    import core_step  # noqa: PLC0415
    import minibatch  # noqa: PLC0415
    import particles  # noqa: PLC0415

    N, D, B = plan.logreg_n, plan.logreg_d, plan.batch
    X, y = _logreg_data(N, D)
    opt = optax.adam(LOGREG_LR)
    pyro_ok = HAVE_PYRO and N <= plan.pyro_max_rows
    rows = []

    # full batch
    svi = jsvi.SVI(
        core_step.logreg_model, core_step.logreg_guide, opt, jsvi.Trace_ELBO()
    )
    cs = {
        "jsvi": jsvi_contender(svi, X, y),
        "hand": hand_contender(lambda: core_step.logreg_hand(opt, D), X, y),
    }
    if HAVE_NUMPYRO:
        cs["numpyro"] = built_contender(lambda: particles.numpyro_runner(opt, X, y, 1))
    if pyro_ok:
        import _pyro  # noqa: PLC0415

        cs["pyro"] = Contender(_pyro.logreg(np.asarray(X), np.asarray(y), LOGREG_LR))
    recs = measure(cs, blocks=plan.blocks, calls=plan.calls, tail=plan.tail, **plan.timing)
    per_point(recs, N, "-ELBO/N")
    notes = _skip_notes(pyro=not pyro_ok and N <= plan.pyro_max_rows)
    if HAVE_PYRO and not pyro_ok:
        notes.append("Pyro (CPU torch) left out at GPU sizes")
    rows.append(
        _row(
            "logreg_full",
            "logistic regression, full batch",
            f"N={N:,} D={D}",
            recs,
            notes,
        )
    )

    # minibatch
    svi = jsvi.SVI(minibatch.model, minibatch.guide, opt, jsvi.Trace_ELBO())
    cs = {
        "jsvi": jsvi_contender(svi, X, y, B),
        "hand": hand_contender(lambda: minibatch.hand(opt, N, D, B), X, y),
    }
    if HAVE_NUMPYRO:  # minibatch.py's NumPyro step: Adam(1e-3), as LOGREG_LR
        cs["numpyro"] = built_contender(lambda: minibatch.numpyro_contender(X, y, B))
    if pyro_ok:
        cs["pyro"] = Contender(
            _pyro.logreg(np.asarray(X), np.asarray(y), LOGREG_LR, batch=B)
        )
    recs = measure(cs, blocks=plan.blocks, calls=plan.calls * 2, tail=plan.tail, **plan.timing)
    per_point(recs, N, "-ELBO/N")
    rows.append(
        _row(
            "logreg_minibatch",
            "logistic regression, minibatch",
            f"B={B:,} of N={N:,} D={D}",
            recs,
            list(notes),
        )
    )
    return rows


def w_partIII(plan: Plan) -> list[dict]:
    import partIII_baseline as P3  # noqa: PLC0415

    lr, betas, tol = 5e-4, (0.93, 0.999), 0.8
    opt = optax.adam(lr, b1=betas[0], b2=betas[1])
    rows = []
    for use_baseline in (False, True):
        key = "partIII_baseline" if use_baseline else "partIII_plain"
        svi = jsvi.SVI(
            P3.model, P3.make_guide(use_baseline), opt, jsvi.TraceGraph_ELBO()
        )
        cs = {"jsvi": jsvi_contender(svi, P3.DATA)}
        notes = ["no hand-written score-function step"]
        if HAVE_NUMPYRO and not use_baseline:
            np_svi = numpyro_coin_svi(opt, score_function=True)
            cs["numpyro"] = numpyro_contender(np_svi, P3.DATA)
        elif HAVE_NUMPYRO:
            notes.append("NumPyro has no decaying-average baseline")
        if HAVE_PYRO:
            import _pyro  # noqa: PLC0415

            cs["pyro"] = Contender(
                _pyro.part3(np.asarray(P3.DATA), use_baseline, lr, betas)
            )
        recs = measure(cs, blocks=plan.blocks, calls=plan.calls, tail=0, **plan.timing)
        converge = {
            "jsvi": P3.steps_to_converge(
                use_baseline,
                plan.seeds,
                plan.max_steps,
                grad_variance=plan.grad_variance,
            )
        }
        if "numpyro" in cs:
            converge["numpyro"] = numpyro_steps_to_converge(
                np_svi, P3.DATA, plan.seeds, plan.max_steps, P3.TARGET, tol
            )
        if "pyro" in cs:
            converge["pyro"] = _pyro.part3_steps_to_converge(
                np.asarray(P3.DATA),
                use_baseline,
                seeds=plan.pyro_seeds,
                max_steps=plan.max_steps,
                lr=lr,
                betas=betas,
                target=P3.TARGET,
                tolerance=tol,
            )
            if plan.pyro_seeds < plan.seeds:
                notes.append(
                    f"Pyro: {plan.pyro_seeds} seeds (others {plan.seeds}), one Python loop each"
                )
        for name, c in converge.items():
            n_seeds = len(c["steps"])
            recs[name].update(
                converge=c,
                correctness_value=c["median_steps"],
                correctness=f"median {c['median_steps']:.0f} steps ({c['converged']}/{n_seeds} conv.)",
            )
        notes += _skip_notes()
        label = "Part III coin, " + (
            "decaying-avg baseline" if use_baseline else "no baseline"
        )
        rows.append(
            _row(
                key,
                label,
                f"{plan.seeds} seeds, max {plan.max_steps:,} steps",
                recs,
                notes,
            )
        )
    plain, base = rows
    ratios = {
        name: base["contenders"][name]["converge"]["median_steps"]
        / plain["contenders"][name]["converge"]["median_steps"]
        for name in base["contenders"]
        if "converge" in plain["contenders"].get(name, {})
    }
    base["baseline_over_plain_median_steps"] = ratios
    base["notes"].append(
        "median steps with/without baseline: "
        + ", ".join(f"{LABELS[k]} {v:.2f}" for k, v in ratios.items())
        + " (target <= 0.6)"
    )
    return rows


def hand_mixture(data, lr: float, K: int, init_locs):
    """The enumerated mixture's loss by hand: a logsumexp over components, weights
    through a softmax (jsvi and NumPyro use stick-breaking, Pyro a softmax)."""
    opt = optax.adam(lr)

    def loss(u, key, x):
        del key
        log_w = jax.nn.log_softmax(u["logits"])
        lp = norm_lp(x[:, None], u["locs"], jnp.exp(u["log_scales"]))
        return -jnp.sum(jax.nn.logsumexp(log_w + lp, axis=-1))

    u0 = {
        "logits": jnp.zeros(K),
        "locs": jnp.array(init_locs),
        "log_scales": jnp.zeros(K),
    }
    return make_step(loss, opt), (u0, opt.init(u0), jax.random.key(0))


def w_mixture(plan: Plan) -> list[dict]:
    import enum_mixture as EM  # noqa: PLC0415

    rows = []
    for n in plan.mixture_n:
        data = EM.make_data(n, jax.random.key(n))
        step, init_s = EM.jsvi_contender(data)
        cs = {
            "jsvi": Contender(step, init_s),
            "hand": hand_contender(
                lambda data=data: hand_mixture(data, 1e-2, EM.K, EM.INIT_LOCS), data
            ),
        }
        other = EM.numpyro_contender(data) if HAVE_FUNSOR else None
        if other is not None:
            cs["numpyro"] = Contender(*other)
        pyro_ok = HAVE_PYRO and n <= plan.pyro_max_rows
        if pyro_ok:
            import _pyro  # noqa: PLC0415

            cs["pyro"] = Contender(
                _pyro.mixture(np.asarray(data), EM.K, EM.INIT_LOCS, 1e-2)
            )
        recs = measure(cs, blocks=plan.blocks, calls=plan.mixture_calls, tail=plan.tail, **plan.timing)
        per_point(recs, n, "loglik/N", sign=-1.0)
        notes = _skip_notes(funsor=True, pyro=n <= plan.pyro_max_rows)
        if HAVE_PYRO and not pyro_ok:
            notes.append("Pyro (CPU torch) left out at GPU sizes")
        notes.append(
            "hand-written and Pyro put the weights through a softmax, jsvi and NumPyro stick-breaking"
        )
        rows.append(
            _row(f"mixture_{n}", "enumerated mixture, K=3", f"N={n:,}", recs, notes)
        )
    return rows


def w_particles(plan: Plan) -> list[dict]:
    import core_step  # noqa: PLC0415
    import particles  # noqa: PLC0415

    N, D = plan.particles_n, plan.logreg_d
    X, y = _logreg_data(N, D)
    opt = optax.adam(LOGREG_LR)
    rows = []
    for P in plan.particles:
        svi = jsvi.SVI(
            core_step.logreg_model,
            core_step.logreg_guide,
            opt,
            jsvi.Trace_ELBO(num_particles=P),
        )
        cs = {
            "jsvi": jsvi_contender(svi, X, y),
            "hand": hand_contender(lambda P=P: particles.hand(opt, D, P), X, y),
        }
        if HAVE_NUMPYRO:
            cs["numpyro"] = built_contender(
                lambda P=P: particles.numpyro_runner(opt, X, y, P)
            )
        if HAVE_PYRO:
            import _pyro  # noqa: PLC0415

            cs["pyro"] = Contender(
                _pyro.logreg(np.asarray(X), np.asarray(y), LOGREG_LR, particles=P)
            )
        calls = max(3, min(plan.calls, 2_000 // P))
        recs = measure(cs, blocks=plan.blocks, calls=calls, tail=min(plan.tail, calls), **plan.timing)
        per_point(recs, N, "-ELBO/N")
        rows.append(
            _row(
                f"particles_{P}",
                "logreg particles",
                f"P={P} N={N:,} D={D}",
                recs,
                _skip_notes(),
            )
        )
    return rows


def w_vae(plan: Plan) -> list[dict]:
    VB = _load_vae_bench()
    V = VB.V
    x_train, x_test = V.load_data()
    if plan.vae_tile > 1:
        x_train = jnp.tile(x_train, (plan.vae_tile, 1))
    config = V.Config(
        hidden=plan.vae_hidden,
        num_steps=plan.vae_steps,
        learning_rate=plan.vae_lr,
        batch_size=plan.vae_batch,
    )
    fits, steps = {}, {}
    fits["jsvi"], steps["jsvi"] = VB.run_jsvi(config, x_train, x_test, plan.vae_draws)
    if HAVE_NUMPYRO:
        fits["numpyro"], steps["numpyro"] = VB.run_numpyro(
            config, x_train, x_test, plan.vae_draws
        )
    pyro_ok = HAVE_PYRO and plan.vae_tile == 1
    if pyro_ok:
        import _pyro  # noqa: PLC0415

        init = jax.tree.map(np.asarray, V.init_weights(jax.random.key(0), config))
        fits["pyro"], steps["pyro"] = _pyro.vae(
            init,
            config.z_dim,
            V.MAX_INTENSITY,
            config.learning_rate,
            config.num_steps,
            config.batch_size,
            np.asarray(x_train),
            np.asarray(x_test),
            plan.vae_draws,
        )
    recs = measure(
        {k: Contender(s) for k, s in steps.items()},
        blocks=plan.blocks,
        calls=plan.vae_calls,
        **plan.timing,
    )
    for name, fit in fits.items():
        recs[name].update(fit)
        recs[name]["correctness_value"] = fit["heldout_elbo"]
        recs[name]["correctness"] = (
            f"held-out ELBO {fit['heldout_elbo']:.2f} ± {fit['heldout_elbo_se']:.2f}"
        )
    notes = ["no hand-written VAE"] + _skip_notes(pyro=plan.vae_tile == 1)
    if HAVE_PYRO and not pyro_ok:
        notes.append("Pyro (CPU torch) left out at GPU sizes")
    train = ", ".join(f"{LABELS[k]} {v['train_s']:.1f} s" for k, v in fits.items())
    notes.append(
        f"whole training run of {config.num_steps:,} steps, compile included: {train}"
    )
    size = f"{x_train.shape[0]:,} images, batch {config.batch_size}, hidden {config.hidden}, {config.num_steps:,} steps"
    return [
        _row(
            "vae",
            "VAE on digits (held-out ELBO, nats/image)",
            size,
            recs,
            notes,
            independent_pixel_baseline=V.independent_pixels_loglik(x_train, x_test),
        )
    ]


def w_loop(plan: Plan) -> list[dict]:
    S, Sp = plan.loop_steps, min(plan.pyro_loop_steps, plan.loop_steps)
    pieces = coin_pieces()
    data, svi = pieces["data"], pieces["svi"]
    key = jax.random.key(0)
    ends: dict[str, tuple[float, float]] = {}

    def ab(params):
        return float(params["a"]), float(params["b"])

    def jsvi_run():
        state, losses = jsvi.svi_run(svi, key, S, data, progress_bar=False)
        ends["jsvi_run"] = ab(jsvi.get_params(svi, state))
        return losses

    def jsvi_loop():
        state = jsvi.svi_init(svi, key, data)
        for _ in range(S):
            state, loss = jsvi.svi_update(svi, state, data)
        ends["jsvi_loop"] = ab(jsvi.get_params(svi, state))
        return loss

    hand_step, hand_init = pieces["hand"]

    def body(carry, _):
        u, o, k, loss = hand_step(*carry, data)
        return (u, o, k), loss

    hand_scan = jax.jit(lambda st: jax.lax.scan(body, st, None, length=S))

    def hand_run():
        (u, _, _), losses = hand_scan(hand_init)
        ends["hand_run"] = (float(jnp.exp(u["a"])), float(jnp.exp(u["b"])))
        return losses

    def hand_loop():
        st = hand_init
        for _ in range(S):
            u, o, k, loss = hand_step(*st, data)
            st = (u, o, k)
        ends["hand_loop"] = (float(jnp.exp(st[0]["a"])), float(jnp.exp(st[0]["b"])))
        return loss

    cs = {
        "jsvi_run": Contender(jsvi_run, steps_per_call=S),
        "jsvi_loop": Contender(jsvi_loop, steps_per_call=S),
        "hand_run": Contender(hand_run, steps_per_call=S),
        "hand_loop": Contender(hand_loop, steps_per_call=S),
    }
    if HAVE_NUMPYRO:
        np_svi, np_update = pieces["numpyro"], pieces["numpyro_update"]

        def numpyro_run():
            result = np_svi.run(jax.random.key(0), S, data, progress_bar=False)
            ends["numpyro_run"] = ab(result.params)
            return result.losses

        def numpyro_loop():
            state = np_svi.init(jax.random.key(0), data)
            for _ in range(S):
                state, loss = np_update(state, data)
            ends["numpyro_loop"] = ab(np_svi.get_params(state))
            return loss

        cs["numpyro_run"] = Contender(numpyro_run, steps_per_call=S)
        cs["numpyro_loop"] = Contender(numpyro_loop, steps_per_call=S)
    if HAVE_PYRO:
        import _pyro  # noqa: PLC0415

        pyro_fit = _pyro.coin_loop(np.asarray(data), COIN_LR, Sp)

        def pyro_loop():
            ends["pyro_loop"] = pyro_fit()
            return ends["pyro_loop"]

        cs["pyro_loop"] = Contender(pyro_loop, steps_per_call=Sp)
    # one untimed call each where a later first call cleared the caches of earlier
    # ones (NumPyro's svi.run compiles on every call: each extra call costs seconds)
    recs = measure(
        cs, blocks=plan.loop_repeats, calls=1, warmup=int(plan.cold), **plan.timing
    )
    for name, rec in recs.items():
        rec.update(beta_summary(*ends[name]))
    notes = _skip_notes()
    if HAVE_PYRO:
        notes.append(
            f"Pyro has no compiled loop: its Python loop ({Sp:,} steps) in both rows"
        )
    size = f"{S:,} steps"
    compiled = {
        k.split("_")[0]: recs[k]
        for k in ("jsvi_run", "hand_run", "numpyro_run")
        if k in recs
    }
    python = {
        k.split("_")[0]: recs[k]
        for k in ("jsvi_loop", "hand_loop", "numpyro_loop")
        if k in recs
    }
    if "pyro_loop" in recs:
        compiled["pyro"] = python["pyro"] = recs["pyro_loop"]
    speedup = {
        name: _ratio(recs[f"{name}_loop"], recs[f"{name}_run"], "median_s")
        for name in ("jsvi", "hand", "numpyro")
        if f"{name}_run" in recs
    }
    loop_note = (
        "whole-loop speed-up of the compiled loop over the Python loop: "
        + ", ".join(f"{LABELS[k]} {v:.2f}x" for k, v in speedup.items())
    )
    return [
        _row(
            "loop_compiled",
            "coin loop: svi_run / svi.run / lax.scan",
            size,
            compiled,
            notes + ["NumPyro's svi.run retraces its scan on every call", loop_note],
            compiled_over_python=speedup,
        ),
        _row(
            "loop_python",
            "coin loop: Python loop of updates",
            size,
            python,
            list(notes),
        ),
    ]


RUNNERS = {
    "coin": w_coin,
    "logreg": w_logreg,
    "partIII": w_partIII,
    "mixture": w_mixture,
    "particles": w_particles,
    "vae": w_vae,
    "loop": w_loop,
}


# --- report ------------------------------------------------------------------------------------


def _ratio(rec_a: dict | None, rec_b: dict | None, key: str) -> float | None:
    if not rec_a or not rec_b:
        return None
    if key == "median_s" and rec_b.get("name") in rec_a.get("paired", {}):
        # timed side by side: the median of the per-round ratios
        return rec_a["paired"][rec_b["name"]]
    return rec_a[key] / rec_b[key]


def headline_ratios(row: dict) -> dict[str, Any]:
    c = row["contenders"]
    j = c.get("jsvi")
    out = {}
    for other in ("hand", "numpyro"):
        out[f"jsvi/{other}"] = _ratio(j, c.get(other), "median_s")
        out[f"jsvi/{other}_min"] = _ratio(j, c.get(other), "min_s")
    out["pyro/jsvi"] = _ratio(c.get("pyro"), j, "median_s")
    out["pyro/jsvi_min"] = _ratio(c.get("pyro"), j, "min_s")
    out["hand_vs_pyro"] = _ratio(c.get("pyro"), c.get("hand"), "median_s")
    out["compile_jsvi/numpyro"] = _ratio(j, c.get("numpyro"), "first_call_s")
    n = c.get("numpyro")
    if j and n and j.get("init_s") is not None and n.get("init_s") is not None:
        out["first_step_jsvi/numpyro"] = _first_step(j) / _first_step(n)
    return out


def _first_step(rec: dict) -> float:
    """Seconds before the first step is done: setup (init) plus the first call."""
    return rec["init_s"] + rec["first_call_s"]


def _us(seconds: float) -> str:
    us = 1e6 * seconds
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def _fmt_ratio(med, mn, speedup=False) -> str:
    if med is None:
        return "–"
    if speedup:
        return f"{med:.1f}x ({mn:.1f}x)"
    return f"{med:.2f} ({mn:.2f})"


def markdown(payload: dict) -> str:
    ctx = payload["context"]
    lines = [
        f"Benchmark suite, mode `{payload['mode']}`: {ctx['device']} ({ctx['cpu_count']} cores), "
        f"jax {ctx['jax']}, numpyro {ctx.get('numpyro') or '–'}, pyro {ctx.get('pyro') or '–'}, "
        f"torch {ctx.get('torch') or '–'} ({ctx.get('torch_threads', '–')} threads), "
        f"git {ctx['git_sha']}, {ctx['date']}; load average "
        f"{ctx['loadavg_start'][0]:.2f} at start, {ctx['loadavg_end'][0]:.2f} at end; "
        f"suite wall time {payload['wall_s'] / 60:.1f} min.",
        "",
        "Per-step time ratios: the median over rounds of calls made side by side, in "
        "shuffled order, of the per-round ratio (ratio of minima in brackets); below 1 "
        "for jsvi/x means jsvi is faster; Pyro/jsvi is jsvi's speed-up over Pyro. First "
        "call: the first update, compile included, from cold JAX caches; first step: "
        "setup (svi_init / svi.init) plus first call, the wait before training starts "
        "(cold processes, repeated: benchmarks/first_step.py)."
        + (
            ""
            if payload["plan"].get("cold", True)
            else " In this mode JAX's caches are cleared once per workload, not before "
            "each contender, so a later contender's first call may reuse traces of "
            "shared inner functions and look cheaper than from cold."
        ),
        "",
        "| workload | size | jsvi µs/step | jsvi / hand-written | jsvi / NumPyro | Pyro / jsvi "
        "| first call s jsvi / NumPyro | first step s jsvi / NumPyro "
        "| correctness: jsvi · hand · NumPyro · Pyro |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in payload["rows"]:
        c, r = row["contenders"], row["ratios"]
        j = c.get("jsvi")
        n = c.get("numpyro")
        comp = first_step = "–"
        if j:
            comp = f"{j['first_call_s']:.2f} / " + (f"{n['first_call_s']:.2f}" if n else "–")
            if j.get("init_s") is not None:
                first_step = f"{_first_step(j):.2f} / " + (
                    f"{_first_step(n):.2f}" if n and n.get("init_s") is not None else "–"
                )
        correct = " · ".join(
            c[k].get("correctness", "?").replace("|", "/") if k in c else "–"
            for k in CONTENDERS
        )
        lines.append(
            f"| {row['workload']} | {row['size']} | {_us(j['median_s']) if j else '–'} "
            f"| {_fmt_ratio(r['jsvi/hand'], r['jsvi/hand_min'])} "
            f"| {_fmt_ratio(r['jsvi/numpyro'], r['jsvi/numpyro_min'])} "
            f"| {_fmt_ratio(r['pyro/jsvi'], r['pyro/jsvi_min'], speedup=True)} | {comp} "
            f"| {first_step} | {correct} |"
        )
    lines += ["", "Notes:", ""]
    lines.append(
        f"- coin exact posterior Beta(16, 14): mean {16 / 30:.4f}, sd "
        f"{math.sqrt(16 * 14 / (30**2 * 31)):.4f}."
    )
    for row in payload["rows"]:
        for note in row["notes"]:
            lines.append(f"- {row['workload']} {row['size']}: {note}.")
        if "independent_pixel_baseline" in row:
            lines.append(
                f"- {row['workload']}: independent-pixel baseline log-likelihood "
                f"{row['independent_pixel_baseline']:.2f} nats/image."
            )
    lines += [
        "",
        "Per contender: median and min µs per step, first call (compile) s, setup s "
        "before it, correctness figure, steps taken, load average during the workload.",
        "",
        "| workload | size | contender | median µs | min µs | first call s | setup s | correctness | steps | load |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in payload["rows"]:
        for name in CONTENDERS:
            if name not in row["contenders"]:
                continue
            rec = row["contenders"][name]
            init = "–" if rec.get("init_s") is None else f"{rec['init_s']:.2f}"
            lines.append(
                f"| {row['workload']} | {row['size']} | {LABELS[name]} | {_us(rec['median_s'])} "
                f"| {_us(rec['min_s'])} | {rec['first_call_s']:.2f} | {init} "
                f"| {rec.get('correctness', '')} | {rec['steps_taken']:,} | {row['loadavg'][1]:.2f} |"
            )
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: pathlib.Path) -> pathlib.Path | None:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    rows = payload["rows"]
    names = [r["key"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, 0.8 * len(rows)), 5))
    width = 0.27
    colors = {"hand": "#4c72b0", "numpyro": "#dd8452", "pyro": "#55a868"}
    for i, other in enumerate(("hand", "numpyro", "pyro")):
        xs, ys = [], []
        for k, r in enumerate(rows):
            c = r["contenders"]
            if "jsvi" in c and other in c:
                xs.append(k + (i - 1) * width)
                ys.append(_ratio(c[other], c["jsvi"], "median_s"))
        ax.bar(xs, ys, width, label=f"{LABELS[other]} / jsvi", color=colors[other])
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("median time per step / jsvi's (> 1: jsvi faster)")
    ax.set_title(
        f"jsvi benchmark suite ({payload['mode']}, {payload['context']['device']})"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- driver ------------------------------------------------------------------------------------


def suite_context() -> dict[str, Any]:
    ctx = context()
    ctx.update(
        numpyro=_version("numpyro") if HAVE_NUMPYRO else None,
        funsor=_version("funsor") if HAVE_FUNSOR else None,
        pyro=_version("pyro") if HAVE_PYRO else None,
        torch=_version("torch") if HAVE_PYRO else None,
        optax=_version("optax"),
        jsvi=jsvi.__version__,
        platform=platform.platform(),
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
        loadavg_start=list(os.getloadavg()),
    )
    if HAVE_PYRO:
        import _pyro  # noqa: PLC0415

        ctx.update(_pyro.configure(os.cpu_count() or 1))
    return ctx


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="small sizes, under 2 minutes"
    )
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    mode.add_argument("--gpu", action="store_true", help="accelerator sizes")
    parser.add_argument(
        "--force", action="store_true", help="allow --gpu without an accelerator"
    )
    parser.add_argument(
        "--out", default=None, help="results folder (default benchmarks/results/)"
    )
    parser.add_argument(
        "--only", default=None, help=f"comma-separated subset of {','.join(WORKLOADS)}"
    )
    parser.add_argument("--plan", action="store_true", help="print the sizes and exit")
    opts = parser.parse_args(argv)
    name = (
        "smoke"
        if opts.smoke
        else "quick"
        if opts.quick
        else "gpu"
        if opts.gpu
        else "full"
    )
    plan = PLANS[name]
    platform_name = jax.devices()[0].platform
    if opts.gpu and platform_name == "cpu" and not opts.force:
        raise SystemExit(
            "suite.py --gpu: JAX sees no accelerator (default device "
            f"{jax.devices()[0]}); these sizes (N = 10,000,000) are meant for a GPU. "
            "Install a CUDA jaxlib, or pass --force to run them here anyway."
        )
    only = (
        WORKLOADS if opts.only is None else tuple(w for w in opts.only.split(",") if w)
    )
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {WORKLOADS}")
    if opts.plan:
        print(
            json.dumps(
                {
                    "mode": name,
                    "device": str(jax.devices()[0]),
                    "workloads": only,
                    "plan": dataclasses.asdict(plan),
                },
                indent=2,
            )
        )
        return
    ctx = suite_context()
    print(
        f"suite ({name}) on {ctx['device']}, {ctx['cpu_count']} cores, load {ctx['loadavg_start'][0]:.2f}; "
        f"numpyro {ctx['numpyro'] or 'absent'}, pyro {ctx['pyro'] or 'absent'}, torch {ctx['torch'] or 'absent'}",
        flush=True,
    )
    warm_up_compiler()
    rows, t_suite = [], time.perf_counter()
    for w in only:
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        new = RUNNERS[w](plan)
        seconds, load1 = time.perf_counter() - t0, os.getloadavg()[0]
        for row in new:
            row["loadavg"] = [load0, load1]
            row["workload_wall_s"] = seconds
            row["ratios"] = headline_ratios(row)
        rows += new
        print(f"  {w}: {seconds:.1f} s (load {load0:.2f} -> {load1:.2f})", flush=True)
    ctx["loadavg_end"] = list(os.getloadavg())
    payload = {
        "context": ctx,
        "mode": name,
        "plan": dataclasses.asdict(plan),
        "workloads": list(only),
        "wall_s": time.perf_counter() - t_suite,
        "keys": "jax.random.key(0) for inits; data as in the single-workload scripts",
        "rows": rows,
    }
    stem = "suite" + ("" if name == "full" else f"-{name}")
    if opts.only is not None:
        stem += "-only-" + "-".join(only)
    directory = pathlib.Path(opts.out) if opts.out else RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (
        directory / f"{stem}-{device_tag()}.{ext}" for ext in ("json", "md", "png")
    )
    table = markdown(payload)
    json_path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    md_path.write_text(table)
    png = plot(payload, png_path)
    print()
    print(table)
    print(f"wrote {json_path}, {md_path}" + (f", {png}" if png else ""))


if __name__ == "__main__":
    main()
