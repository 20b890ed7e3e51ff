"""The distribution families of ``continuous2``, ``truncated``, ``multivariate2``,
``counts``, ``negbinomial``, ``mixtures`` and ``relaxed`` against NumPyro's.

For every family, on a batch of ``--batch`` independent elements (100,000 by
default), two jitted programs per library, timed side by side in one run
(interleaved call by call, ``_harness.interleaved``):

- ``log_prob+grad``: the summed ``log_prob`` of fixed values and its gradient with
  respect to every float parameter;
- ``sample``: one draw of the whole batch.

The same argument names build both libraries' distributions (validation off in
both); the values are draws of jsvi's distribution. Reported per family and
operation: median seconds of each library, the paired median ratio jsvi / NumPyro,
and a reason for every family slower than 1.2x; the headline is the median ratio
across all families and operations. NumPyro's column drops out when it is not
installed.

Results go to ``results/dist_families-<device>.json`` (and a Markdown table next
to it).

Usage: ``python benchmarks/dist_families.py [--smoke] [--batch N] [--only NAME]
[--out DIR]``.
"""

from __future__ import annotations

import argparse
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _harness import context, interleaved, write

import jsvi.distributions as dist

try:
    import numpyro.distributions as ndist
except ImportError:  # pragma: no cover - the column drops out
    ndist = None

# Why a family is slower than 1.2x NumPyro, where it is (from the jaxprs of both).
REASONS: dict[str, str] = {
    "TruncatedNormal sample": (
        "the inverse cdf runs in logs (log_ndtr, logaddexp, exp, then ndtri) in a "
        "frame mirrored to the lower tail, so that windows far out in a tail draw "
        "correctly; NumPyro maps a uniform through ndtr and ndtri directly"
    ),
    "TruncatedNormal log_prob+grad": (
        "the normalizer log Z = log(Phi(beta) - Phi(alpha)) comes from two log_ndtr "
        "in a frame mirrored to the lower tail (accurate however far out the window "
        "lies); NumPyro takes log of a difference of ndtr"
    ),
    "ZeroInflatedDistribution log_prob+grad": (
        "built with gate_logits, the zero and nonzero terms come from the log-odds "
        "(two softplus and a logaddexp) so that extreme logits stay finite; NumPyro "
        "turns the logits into probabilities first"
    ),
    "ZeroInflatedPoisson log_prob+grad": (
        "same formula as NumPyro's since the gate-probability path takes log(gate + "
        "exp(.)); a ratio above 1.2 here is within the run-to-run spread of "
        "one-block, millisecond-sized timings on the shared CPU"
    ),
    "MixtureSameFamily log_prob+grad": (
        "jsvi's traced program is a strict subset of NumPyro's (the same "
        "log_softmax, component log-densities and logsumexp, without NumPyro's "
        "support masking); a ratio above 1 is run-to-run spread"
    ),
    "GaussianRandomWalk sample": (
        "the two traced programs are identical (normal draws, cumsum, scale); a "
        "ratio away from 1 is run-to-run spread"
    ),
    "Geometric sample": (
        "the same floor(log(u) / log1p(-p)), jsvi clipping to the int range before "
        "the cast; a ratio above 1 is run-to-run spread"
    ),
    "VonMises sample": (
        "one rejection loop over the whole batch that draws two uniforms per round "
        "for every element until all are accepted"
    ),
}


def _u(key, shape, lo, hi):
    return jax.random.uniform(key, shape, minval=lo, maxval=hi)


def families(b: int) -> dict[str, tuple[Callable, Callable, dict[str, Any]]]:
    """name -> (jsvi builder, NumPyro builder, float parameters of batch ``b``)."""
    k = jax.random.split(jax.random.key(0), 8)
    pos = _u(k[0], (b,), 0.5, 3.0)
    pos2 = _u(k[1], (b,), 2.5, 6.0)
    loc = _u(k[2], (b,), -2.0, 2.0)
    prob = _u(k[3], (b,), 0.1, 0.9)
    logits = _u(k[4], (b,), -2.0, 2.0)
    simplex = jax.nn.softmax(jax.random.normal(k[5], (b, 4)), -1)
    vlogits = jax.random.normal(k[6], (b, 4))
    tril = jnp.broadcast_to(
        jnp.array([[1.0, 0, 0], [0.3, 0.9, 0], [-0.2, 0.1, 0.7]]), (b, 3, 3)
    )
    mloc = jax.random.normal(k[7], (b, 3))
    n = ndist

    def same(name):
        return getattr(dist, name), (getattr(n, name, None) if n else None)

    out: dict[str, tuple[Callable, Callable, dict[str, Any]]] = {}

    def add(name, params, j=None, p=None):
        jj, pp = same(name) if j is None else (j, p)
        out[name] = (jj, pp, params)

    add("Chi2", {"df": pos})
    add("InverseGamma", {"concentration": pos2, "rate": pos})
    add("Gumbel", {"loc": loc, "scale": pos})
    add("Logistic", {"loc": loc, "scale": pos})
    add("Weibull", {"scale": pos, "concentration": pos2})
    add("Pareto", {"scale": pos, "alpha": pos2})
    add("Kumaraswamy", {"concentration1": pos, "concentration0": pos2})
    add("VonMises", {"loc": loc, "concentration": pos})
    add("AsymmetricLaplace", {"loc": loc, "scale": pos, "asymmetry": prob + 0.5})
    add("SoftLaplace", {"loc": loc, "scale": pos})
    add(
        "TruncatedNormal",
        {"loc": loc, "scale": pos, "low": loc - 1.0, "high": loc + pos},
    )
    add(
        "LKJCholesky",
        {"concentration": pos},
        lambda **p: dist.LKJCholesky(3, **p, validate_args=False),
        n and (lambda **p: n.LKJCholesky(3, **p)),
    )
    add(
        "LKJ",
        {"concentration": pos},
        lambda **p: dist.LKJ(3, **p, validate_args=False),
        n and (lambda **p: n.LKJ(3, **p)),
    )
    add("MultivariateStudentT", {"df": pos2, "loc": mloc, "scale_tril": tril})
    add(
        "GaussianRandomWalk",
        {"scale": pos},
        lambda **p: dist.GaussianRandomWalk(**p, num_steps=5, validate_args=False),
        n and (lambda **p: n.GaussianRandomWalk(**p, num_steps=5)),
    )
    add("Geometric", {"probs": prob})
    add(
        "DiscreteUniform",
        {},
        lambda: dist.DiscreteUniform(jnp.zeros(b), 5.0, validate_args=False),
        n and (lambda: n.DiscreteUniform(jnp.zeros(b), 5.0)),
    )
    add(
        "Multinomial",
        {"probs": simplex},
        lambda **p: dist.Multinomial(10, **p, validate_args=False),
        n and (lambda **p: n.Multinomial(10, **p)),
    )
    add(
        "BetaBinomial",
        {"concentration1": pos, "concentration0": pos2},
        lambda **p: dist.BetaBinomial(**p, total_count=10, validate_args=False),
        n and (lambda **p: n.BetaBinomial(**p, total_count=10)),
    )
    add(
        "DirichletMultinomial",
        {"concentration": simplex * 4 + 0.2},
        lambda **p: dist.DirichletMultinomial(**p, total_count=10, validate_args=False),
        n and (lambda **p: n.DirichletMultinomial(**p, total_count=10)),
    )
    add("GammaPoisson", {"concentration": pos, "rate": pos2})
    add("NegativeBinomialProbs", {"total_count": pos, "probs": prob})
    add("NegativeBinomialLogits", {"total_count": pos, "logits": logits})
    add("NegativeBinomial2", {"mean": pos2, "concentration": pos})
    add("ZeroInflatedPoisson", {"gate": prob, "rate": pos2})
    add(
        "ZeroInflatedNegativeBinomial2",
        {"mean": pos2, "concentration": pos, "gate": prob * 0.5},
    )
    add(
        "ZeroInflatedDistribution",
        {"gate_logits": logits, "rate": pos2},
        lambda gate_logits, rate: dist.ZeroInflatedDistribution(
            dist.Poisson(rate, validate_args=False), gate_logits=gate_logits
        ),
        n
        and (
            lambda gate_logits, rate: n.ZeroInflatedDistribution(
                n.Poisson(rate), gate_logits=gate_logits
            )
        ),
    )
    mix_loc = jnp.stack([loc - 1, loc, loc + 1], -1)
    mix_scale = jnp.stack([pos, pos2, pos], -1)
    add(
        "MixtureSameFamily",
        {"logits": vlogits[:, :3], "loc": mix_loc, "scale": mix_scale},
        lambda logits, loc, scale: dist.MixtureSameFamily(
            dist.Categorical(logits=logits), dist.Normal(loc, scale)
        ),
        n
        and (
            lambda logits, loc, scale: n.MixtureSameFamily(
                n.Categorical(logits=logits), n.Normal(loc, scale)
            )
        ),
    )
    add(
        "MixtureGeneral",
        {"logits": vlogits[:, :2], "loc": loc, "scale": pos},
        lambda logits, loc, scale: dist.MixtureGeneral(
            dist.Categorical(logits=logits),
            [dist.Normal(loc, scale), dist.Gumbel(loc, scale)],
        ),
        n
        and (
            lambda logits, loc, scale: n.MixtureGeneral(
                n.Categorical(logits=logits),
                [n.Normal(loc, scale), n.Gumbel(loc, scale)],
            )
        ),
    )
    add("RelaxedBernoulli", {"temperature": pos, "logits": logits})
    add(
        "RelaxedOneHotCategorical",
        {"temperature": pos, "logits": vlogits},
        lambda temperature, logits: dist.RelaxedOneHotCategorical(
            temperature, logits=logits, validate_args=False
        ),
        # (NumPyro has no RelaxedOneHotCategorical: its column drops out)
        n
        and hasattr(n, "RelaxedOneHotCategorical")
        and (
            lambda temperature, logits: n.RelaxedOneHotCategorical(
                temperature[:, None], logits=logits
            )
        )
        or None,
    )
    # plain classes: validation off in jsvi too (NumPyro's default is off)
    for name, (j, p, params) in list(out.items()):
        if isinstance(j, type):
            out[name] = (lambda j=j, **kw: j(**kw, validate_args=False), p, params)
    return out


def programs(
    build: Callable, params: dict[str, Any], value: Any
) -> dict[str, Callable]:
    # The value is an argument, not a constant closed over: XLA would otherwise
    # fold the work that depends on it alone into the program at compile time.
    def lp_sum(p, v):
        return jnp.sum(build(**p).log_prob(v))

    lp_grad = jax.jit(jax.value_and_grad(lp_sum))
    sample = jax.jit(lambda p, key: build(**p).sample(key))
    key = jax.random.key(1)
    return {
        "log_prob+grad": lambda: lp_grad(params, value),
        "sample": lambda: sample(params, key),
    }


SMOKE_FAMILIES = ("Gumbel", "GammaPoisson", "MixtureSameFamily", "ZeroInflatedPoisson")


def run(
    b: int,
    blocks: int,
    calls: int,
    only: Sequence[str] | None,
    on_row: Callable[[list[dict[str, Any]]], Any] = lambda rows: None,
) -> list[dict[str, Any]]:
    rows = []
    for name, (build_j, build_n, params) in families(b).items():
        if only and name not in only:
            continue
        value = jax.jit(
            lambda p, build_j=build_j: build_j(**p).sample(jax.random.key(2))
        )(params)
        progs = {"jsvi": programs(build_j, params, value)}
        if build_n is not None:
            progs["numpyro"] = programs(build_n, params, value)
        for op in ("log_prob+grad", "sample"):
            contenders = {lib: p[op] for lib, p in progs.items()}
            compile_s = {}
            for lib, fn in contenders.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                compile_s[lib] = time.perf_counter() - t0
            timing = interleaved(contenders, blocks=blocks, calls=calls, warmup=1)
            row = {
                "family": name,
                "op": op,
                "batch": b,
                "contenders": {
                    lib: {**t, "first_call_s": compile_s[lib]}
                    for lib, t in timing.items()
                },
            }
            if "numpyro" in timing:
                row["ratio"] = timing["jsvi"]["paired"]["numpyro"]
            rows.append(row)
            on_row(rows)
            ratio = row.get("ratio")
            print(
                f"{name:30s} {op:14s} jsvi {timing['jsvi']['median_s'] * 1e3:8.2f} ms"
                + (
                    f"  numpyro {timing['numpyro']['median_s'] * 1e3:8.2f} ms  ratio {ratio:5.2f}"
                    if ratio is not None
                    else ""
                ),
                flush=True,
            )
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    per_family: dict[str, list[float]] = {}
    for r in rows:
        if "ratio" in r:
            per_family.setdefault(r["family"], []).append(r["ratio"])
    family_ratio = {f: float(np.median(v)) for f, v in per_family.items()}
    slow = {
        f"{r['family']} {r['op']}": {
            "ratio": r["ratio"],
            "reason": REASONS.get(
                f"{r['family']} {r['op']}", REASONS.get(r["family"], "")
            ),
        }
        for r in rows
        if r.get("ratio", 0) > 1.2
    }
    return {
        "median_ratio": float(np.median(ratios)) if ratios else None,
        "median_ratio_per_family": float(np.median(list(family_ratio.values())))
        if family_ratio
        else None,
        "family_ratio": family_ratio,
        "slower_than_1.2x": slow,
    }


def markdown(rows: list[dict[str, Any]], summ: dict[str, Any]) -> str:
    lines = [
        "Distribution families against NumPyro (jsvi / NumPyro, median paired ratio; "
        f"batch {rows[0]['batch'] if rows else 0})",
        "",
        "| family | op | jsvi ms | NumPyro ms | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        c = r["contenders"]
        nmp = c.get("numpyro", {}).get("median_s")
        other = f" (batch {r['batch']})" if rows and r["batch"] != rows[0]["batch"] else ""
        lines.append(
            f"| {r['family']}{other} | {r['op']} | {c['jsvi']['median_s'] * 1e3:.2f} | "
            + (f"{nmp * 1e3:.2f} | {r['ratio']:.2f} |" if nmp else "- | - |")
        )
    lines += ["", f"Median ratio over families and operations: {summ['median_ratio']}"]
    for key, v in summ["slower_than_1.2x"].items():
        lines.append(f"- slower than 1.2x: {key} ({v['ratio']:.2f}): {v['reason']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, four families (CI)"
    )
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--only", default=None, help="comma-separated families")
    parser.add_argument("--out", default=None, help="results directory")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace the --only families' rows in the last results file",
    )
    opts = parser.parse_args()
    b = 100 if opts.smoke else opts.batch
    blocks, calls = (1, 2) if opts.smoke else (opts.blocks, opts.calls)
    only = (
        opts.only.split(",") if opts.only else (SMOKE_FAMILIES if opts.smoke else None)
    )
    name = "dist_families-smoke" if opts.smoke else "dist_families"
    ctx = context()
    ctx.update(blocks=blocks, calls=calls)

    def save(rows: list[dict[str, Any]]) -> pathlib.Path:
        payload = {"context": ctx, "batch": b, "summary": summary(rows), "rows": rows}
        return write(name, payload, opts.out)

    kept: list[dict[str, Any]] = []
    if opts.merge:  # re-run some families, keep the other rows of the last run
        import json

        from _harness import RESULTS, device_tag

        last = pathlib.Path(opts.out or RESULTS) / f"{name}-{device_tag()}.json"
        previous = json.loads(last.read_text())
        kept = previous["rows"]
        ctx["merged"] = {"families": list(only or ()), "into": previous["context"]}

    def merged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        redone = {(r["family"], r["op"]) for r in rows}
        return [r for r in kept if (r["family"], r["op"]) not in redone] + rows

    def save_all(rows: list[dict[str, Any]]) -> pathlib.Path:
        return save(merged(rows))

    rows = merged(run(b, blocks, calls, only, save_all))  # written after every row
    summ = summary(rows)
    path = save(rows)
    md = markdown(rows, summ)
    pathlib.Path(path).with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
