"""Is the coin fair? Pyro's SVI Part I example, in jsvi.

Prior Beta(10, 10), 6 heads and 4 tails, a Beta guide: SVI should recover the exact
posterior Beta(16, 14).
"""

import jax  # noqa: E401
import jax.numpy as jnp
import optax

import jsvi
import jsvi.distributions as dist
from jsvi import constraints

data = jnp.array([1.0] * 6 + [0.0] * 4)


def model(data):
    f = jsvi.sample("latent_fairness", dist.Beta(10.0, 10.0))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("obs", dist.Bernoulli(f), obs=data)


def guide(data):
    a = jsvi.param("alpha_q", 15.0, constraint=constraints.positive)
    b = jsvi.param("beta_q", 15.0, constraint=constraints.positive)
    jsvi.sample("latent_fairness", dist.Beta(a, b))


svi = jsvi.SVI(model, guide, optax.adam(0.005), jsvi.Trace_ELBO(num_particles=8))
state, losses = jsvi.svi_run(svi, jax.random.key(0), 3000, data)
p = jsvi.get_params(svi, state)
a, b = p["alpha_q"], p["beta_q"]
mean, sd = a / (a + b), jnp.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
print(f"posterior mean {mean:.4f} (exact 0.5333), sd {sd:.4f} (exact 0.0896)")
