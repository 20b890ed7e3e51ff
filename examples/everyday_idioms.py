"""Three everyday idioms: local parameters with minibatches, derived quantities in
posterior draws, and missing data.

1. Local variational parameters. Each data point x_i ~ N(z_i, 1) has its own
   latent z_i ~ N(0, 1), and the guide its own loc_i and scale_i, declared with
   ``jsvi.param(..., event_dim=0)`` inside a subsampled plate: each step reads and
   updates only the rows of its minibatch. The exact posterior is N(x_i / 2, 1/2).
2. ``deterministic`` sites come back from ``guide.sample_posterior`` and
   ``Predictive``, computed from each draw.
3. Missing data: ``sample(..., obs_mask=)`` observes the entries present and
   imputes the others through the latent site ``y_unobserved``.

Run ``python examples/everyday_idioms.py`` (``--smoke`` for a quick run).
"""

import sys

import jax
import jax.numpy as jnp
import optax

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.autoguide import AutoNormal

# --- 1. local params in a subsampled plate -------------------------------------------


def _decaying_adam(num_steps):
    """Adam with a learning rate from 0.05 down to 0.0005: the late small steps
    average the gradient noise out."""
    return optax.adam(optax.exponential_decay(0.05, num_steps, 0.01))


def local_model(x, batch_size):
    with jsvi.plate("data", x.shape[0], subsample_size=batch_size) as idx:
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x[idx])


def local_guide(x, batch_size):
    n = x.shape[0]
    with jsvi.plate("data", n, subsample_size=batch_size):
        # full-size params; inside the plate they read as the minibatch's rows
        loc = jsvi.param("z_loc", jnp.zeros(n), event_dim=0)
        scale = jsvi.param("z_scale", jnp.ones(n), constraint=constraints.positive,
                           event_dim=0)
        jsvi.sample("z", dist.Normal(loc, scale))


def fit_local(num_steps=5000, n=1000, batch_size=100):
    """Fit the local guide; return the mean absolute errors of loc (in posterior
    sds) and of log scale against the exact posterior, over the N points."""
    x = 2.0 * jax.random.normal(jax.random.key(0), (n,))
    svi = jsvi.SVI(local_model, local_guide, _decaying_adam(num_steps), jsvi.Trace_ELBO())
    state, _ = jsvi.svi_run(svi, jax.random.key(1), num_steps, x, batch_size,
                            progress_bar=False)
    p = jsvi.get_params(svi, state)
    sd = 0.5**0.5
    loc_err = float(jnp.mean(jnp.abs(p["z_loc"] - x / 2)) / sd)
    log_scale_err = float(jnp.mean(jnp.abs(jnp.log(p["z_scale"] / sd))))
    return loc_err, log_scale_err


# --- 2. deterministic sites in posterior draws ---------------------------------------


def regression(x, y=None):
    a = jsvi.sample("a", dist.Normal(0.0, 10.0))
    b = jsvi.sample("b", dist.Normal(0.0, 10.0))
    with jsvi.plate("data", x.shape[0]):
        mean = jsvi.deterministic("mean", a + b * x)
        jsvi.sample("y", dist.Normal(mean, 0.5), obs=y)


def fit_regression(num_steps=1500):
    """Draws from a fitted AutoNormal, with the derived ``mean`` site in them."""
    x = jnp.linspace(-1.0, 1.0, 20)
    y = 1.0 + 2.0 * x + 0.5 * jax.random.normal(jax.random.key(2), x.shape)
    guide = AutoNormal(regression)
    svi = jsvi.SVI(regression, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    state, _ = jsvi.svi_run(svi, jax.random.key(3), num_steps, x, y, progress_bar=False)
    params = jsvi.get_params(svi, state)
    draws = guide.sample_posterior(jax.random.key(4), params, x, y, sample_shape=(500,))
    predictive = jsvi.Predictive(regression, guide=guide, params=params, num_samples=500)
    return draws, predictive(jax.random.key(5), x)


# --- 3. missing data ------------------------------------------------------------------


def missing_model(y, observed):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", y.shape[0]):
        jsvi.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=observed)


def impute(num_steps=3000):
    """Fit AutoNormal to data with two missing entries; return the imputed draws
    (``y`` holds the data where present and the imputed values elsewhere).

    The exact posterior of a missing entry is N(0.8, 1.10**2) (mu's posterior
    N(0.8, 0.45**2) plus unit noise); AutoNormal is mean-field, so it keeps no
    correlation between mu and the missing entry, and its optimum is N(0.8, 1).
    """
    y = jnp.array([0.5, jnp.nan, 1.5, jnp.nan, 2.0, 0.0])
    observed = ~jnp.isnan(y)
    guide = AutoNormal(missing_model)
    svi = jsvi.SVI(missing_model, guide, _decaying_adam(num_steps), jsvi.Trace_ELBO())
    state, _ = jsvi.svi_run(svi, jax.random.key(6), num_steps, y, observed,
                            progress_bar=False)
    params = jsvi.get_params(svi, state)
    return jsvi.Predictive(missing_model, guide=guide, params=params, num_samples=1000)(
        jax.random.key(7), y, observed
    )


if __name__ == "__main__":
    smoke = "--smoke" in sys.argv
    steps = 200 if smoke else None
    loc_err, log_scale_err = fit_local(*([steps] if smoke else []))
    print(f"1. local params, N=1000 in minibatches of 100: mean |loc error| "
          f"{loc_err:.3f} posterior sd, mean |log-scale error| {log_scale_err:.3f}")
    draws, pred = fit_regression(*([steps] if smoke else []))
    print(f"2. sample_posterior sites {sorted(draws)}; Predictive sites {sorted(pred)}")
    out = impute(*([steps] if smoke else []))
    print(f"3. imputed y[1]: mean {float(out['y'][:, 1].mean()):.2f}, "
          f"sd {float(out['y'][:, 1].std()):.2f} (mean-field optimum: mean 0.80, sd 1.00)")
