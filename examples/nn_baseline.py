"""A neural baseline for an amortized discrete guide (SVI Part III, functionally).

Each data point x_n comes from one of two Gaussians (z_n in {0, 1}). The guide
q(z_n | x_n) = Bernoulli(sigmoid(a * x_n + c)) is trained with score-function
gradients. A small network b(x_n) predicts each point's downstream cost and is
subtracted from it; its weights are declared with ``jsvi.param`` and trained only
through the baseline loss, with a higher learning rate via ``jsvi.per_param``.

Run: ``python examples/nn_baseline.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import jsvi
import jsvi.distributions as dist

MU = jnp.array([-2.0, 2.0])


def make_data(key, n=64):
    k1, k2 = jax.random.split(key)
    z = jax.random.bernoulli(k1, 0.5, (n,)).astype(jnp.int32)
    return MU[z] + jax.random.normal(k2, (n,))


def model(x):
    with jsvi.plate("data", x.shape[0]):
        z = jsvi.sample("z", dist.Bernoulli(0.5))
        jsvi.sample("x", dist.Normal(MU[z], 1.0), obs=x)


def baseline_net(weights, x):
    """A one-hidden-layer MLP, x (N,) -> predicted cost (N,)."""
    h = jnp.tanh(x[:, None] * weights["w1"] + weights["b1"])
    return h @ weights["w2"] + weights["b2"]


def make_guide(use_baseline: bool):
    def guide(x):
        a = jsvi.param("a", 0.1)
        c = jsvi.param("c", 0.0)
        infer = {}
        if use_baseline:
            weights = jsvi.param(
                "baseline_net",
                lambda key: {
                    "w1": 0.5 * jax.random.normal(key, (16,)),
                    "b1": jnp.zeros(16),
                    "w2": jnp.zeros(16),
                    "b2": jnp.zeros(()),
                },
            )
            infer = {
                "baseline": {
                    "nn_baseline": lambda inp: baseline_net(weights, inp),
                    "nn_baseline_input": x,
                }
            }
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("z", dist.Bernoulli(logits=a * x + c), infer=infer)

    return guide


def optimizer():
    return jsvi.per_param(
        lambda name: optax.adam(3e-2 if name.startswith("baseline") else 1e-2)
    )


def train(use_baseline: bool, x, num_steps: int, progress_bar: bool = False):
    svi = jsvi.SVI(model, make_guide(use_baseline), optimizer(), jsvi.TraceGraph_ELBO())
    state, losses = jsvi.svi_run(svi, 0, num_steps, x, progress_bar=progress_bar)
    return svi, state, losses


def compare_variance(x, num_steps: int = 500, num_samples: int = 2000):
    """Train with the baseline, then compare gradient variances of (a, c) at the
    trained parameters with and without the baseline."""
    svi, state, _ = train(True, x, num_steps)
    with_nn = jsvi.diagnostics.gradient_variance(svi, state, x, num_samples=num_samples)
    plain = jsvi.SVI(model, make_guide(False), optimizer(), jsvi.TraceGraph_ELBO())
    params = {k: v for k, v in state.params.items() if not k.startswith("baseline")}
    plain_state = jsvi.svi_init(plain, 0, x)._replace(params=params)
    without = jsvi.diagnostics.gradient_variance(plain, plain_state, x, num_samples=num_samples)
    return {
        name: (float(without["variance"][name]), float(with_nn["variance"][name]))
        for name in ("a", "c")
    }, jsvi.get_params(svi, state)


if __name__ == "__main__":
    x = make_data(jax.random.key(1))
    variances, params = compare_variance(x)
    print(f"guide: a = {float(params['a']):.2f}, c = {float(params['c']):.2f}")
    for name, (without, with_nn) in variances.items():
        print(
            f"gradient variance of {name}: {without:.4g} without baseline, "
            f"{with_nn:.4g} with the trained network ({without / with_nn:.1f}x lower)"
        )
