"""Held-out ELBO of the digits VAE (``examples/vae_digits.py``) trained with jsvi
and with NumPyro: same architecture, same initial weights, same optimizer, same
minibatch size and number of steps, in one run.

For each library: total training wall time (compilation included), the
steady-state time of one jitted update step (median and IQR over interleaved
blocks), and the held-out ELBO per test image with its Monte Carlo standard error
(mean of independent single-particle ELBO estimates of the whole test set). The
independent-pixel baseline's held-out log-likelihood is reported alongside.
NumPyro is optional: without it (or with ``--smoke``) its column is skipped when
it cannot be imported. Results go to ``results/vae_digits-<device>.json``.

Usage: ``python benchmarks/vae_digits.py [--smoke] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import time

import jax
import numpy as np
import optax
from _harness import context, interleaved, time_first_call, write

import jsvi

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import vae_digits as V  # noqa: E402


def run_jsvi(config, x_train, x_test, num_draws):
    model, guide, params, losses, seconds = V.train(x_train, config)
    elbo, se = V.heldout_elbo(model, guide, params, x_test, num_draws=num_draws)
    svi = jsvi.SVI(model, guide, optax.adam(config.learning_rate), jsvi.Trace_ELBO())
    box = {"state": jsvi.svi_init(svi, 0, x_train, batch_size=config.batch_size)}

    def step():
        box["state"], loss = jsvi.svi_update(
            svi, box["state"], x_train, batch_size=config.batch_size
        )
        return loss

    return {
        "heldout_elbo": elbo,
        "heldout_elbo_se": se,
        "train_s": seconds,
        "final_train_loss_per_image": float(losses[-100:].mean()) / x_train.shape[0],
    }, step


def numpyro_model_guide(init, z_dim):
    import jax.numpy as jnp  # noqa: PLC0415
    import numpyro  # noqa: PLC0415
    import numpyro.distributions as ndist  # noqa: PLC0415

    def model(x, batch_size=None):
        decoder = numpyro.param("decoder", init["decoder"])
        with numpyro.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            z = numpyro.sample("z", ndist.Normal(jnp.zeros(z_dim), 1.0).to_event(1))
            logits = V.mlp_apply(decoder, z)
            pixels = ndist.Binomial(V.MAX_INTENSITY, logits=logits).to_event(1)
            numpyro.sample("x", pixels, obs=x[idx])

    def guide(x, batch_size=None):
        encoder = numpyro.param("encoder", init["encoder"])
        with numpyro.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            loc, scale = V.encode(encoder, x[idx], z_dim)
            numpyro.sample("z", ndist.Normal(loc, scale).to_event(1))

    return model, guide


def run_numpyro(config, x_train, x_test, num_draws):
    from numpyro.infer import SVI, Trace_ELBO  # noqa: PLC0415
    from numpyro.optim import optax_to_numpyro  # noqa: PLC0415

    init = V.init_weights(jax.random.key(0), config)
    model, guide = numpyro_model_guide(init, config.z_dim)
    optim = optax_to_numpyro(optax.adam(config.learning_rate))
    svi = SVI(model, guide, optim, Trace_ELBO())
    t0 = time.perf_counter()
    result = svi.run(
        jax.random.key(1),
        config.num_steps,
        x_train,
        batch_size=config.batch_size,
        progress_bar=False,
    )
    jax.block_until_ready(result.params)
    seconds = time.perf_counter() - t0
    elbo = Trace_ELBO()
    keys = jax.random.split(jax.random.key(2), num_draws)
    totals = (
        np.asarray(
            jax.jit(
                jax.vmap(lambda k: -elbo.loss(k, result.params, model, guide, x_test))
            )(keys)
        )
        / x_test.shape[0]
    )
    update = jax.jit(lambda s: svi.update(s, x_train, batch_size=config.batch_size))
    box = {"state": svi.init(jax.random.key(0), x_train, batch_size=config.batch_size)}

    def step():
        box["state"], loss = update(box["state"])
        return loss

    return {
        "heldout_elbo": float(totals.mean()),
        "heldout_elbo_se": float(totals.std(ddof=1) / np.sqrt(num_draws)),
        "train_s": seconds,
        "final_train_loss_per_image": float(result.losses[-100:].mean())
        / x_train.shape[0],
    }, step


def _have(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    opts = parser.parse_args()
    if opts.smoke:
        config = V.SMOKE._replace(num_steps=200)
        num_draws, blocks, calls = 10, 2, 5
    else:
        config = V.FULL
        num_draws, blocks, calls = 100, 10, 50
    x_train, x_test = V.load_data()
    rows = {}
    rows["jsvi"], jsvi_step = run_jsvi(config, x_train, x_test, num_draws)
    steps = {"jsvi": jsvi_step}
    if _have("numpyro"):
        rows["numpyro"], steps["numpyro"] = run_numpyro(
            config, x_train, x_test, num_draws
        )
    else:
        print("numpyro is not installed: skipping its column")
    first = {name: time_first_call(fn) for name, fn in steps.items()}
    steady = interleaved(steps, blocks=blocks, calls=calls)
    for name in rows:
        rows[name]["first_step_call_s"] = first[name]
        rows[name]["step"] = steady[name]
    baseline = V.independent_pixels_loglik(x_train, x_test)
    payload = {
        "context": context(),
        "config": {
            **config._asdict(),
            "num_train": int(x_train.shape[0]),
            "num_test": int(x_test.shape[0]),
            "elbo_draws": num_draws,
            "smoke": opts.smoke,
        },
        "independent_pixel_baseline": baseline,
        "rows": [{"library": name, **row} for name, row in rows.items()],
    }
    path = write("vae_digits" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    for name, row in rows.items():
        print(
            f"{name:8s} held-out ELBO {row['heldout_elbo']:8.2f} +- "
            f"{row['heldout_elbo_se']:.2f} nats/image; train {row['train_s']:.1f} s; "
            f"step {1e3 * row['step']['median_s']:.3f} ms"
        )
    print(f"independent-pixel baseline {baseline:.2f} nats/image")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
