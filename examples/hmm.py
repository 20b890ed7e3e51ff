"""A hidden Markov model learned with enumeration, decoded with Viterbi, and
compared across numbers of states by LOO.

Data come from a 3-state HMM with Gaussian emissions. The model loops over time
with ``jsvi.scan``, so ``TraceEnum_ELBO`` sums the hidden states out exactly
(the forward algorithm inside one ``lax.scan``) at a cost linear in the length
of the sequences, and compiles it once whatever that length. The
state means are latent with a Normal guide; the initial and transition
probabilities and the emission scale are model parameters (maximum likelihood).
``jsvi.infer_discrete(..., temperature=0)`` gives the most likely state path,
and ``jsvi.log_likelihood`` + ``jsvi.to_arviz`` give ArviZ what ``arviz.loo``
needs: one log-likelihood per sequence (the states of a sequence are not
independent, so LOO leaves out whole sequences).

Run: ``python examples/hmm.py`` (``JSVI_SMOKE=1`` for a quick run).
"""

from __future__ import annotations

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jsvi
import jsvi.distributions as dist
from jsvi import constraints, handlers

SMOKE = os.environ.get("JSVI_SMOKE") == "1"
NUM_SEQUENCES, LENGTH = (4, 10) if SMOKE else (8, 40)
NUM_STEPS = 100 if SMOKE else 600

TRUE_INIT = jnp.array([0.5, 0.3, 0.2])
TRUE_TRANS = jnp.array([[0.85, 0.1, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
TRUE_LOCS = jnp.array([-2.0, 0.5, 3.0])
TRUE_SCALE = 0.6


def make_data(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """States and observations, both (NUM_SEQUENCES, LENGTH)."""
    keys = jax.random.split(key, 2 * LENGTH)
    s = jax.random.categorical(keys[0], jnp.log(TRUE_INIT), shape=(NUM_SEQUENCES,))
    states, ys = [], []
    for t in range(LENGTH):
        if t:
            s = jax.random.categorical(keys[2 * t], jnp.log(TRUE_TRANS[s]))
        noise = jax.random.normal(keys[2 * t + 1], (NUM_SEQUENCES,))
        states.append(s)
        ys.append(TRUE_LOCS[s] + TRUE_SCALE * noise)
    return jnp.stack(states, 1), jnp.stack(ys, 1)


def make_model(num_states: int):
    """An HMM with ``num_states`` states; its guide for the state means."""
    start = jnp.linspace(-3.0, 3.0, num_states)

    @jsvi.config_enumerate
    def model(ys):
        init = jsvi.param(
            "init", jnp.ones(num_states) / num_states, constraints.simplex
        )
        trans = jsvi.param(
            "trans",
            0.2 / num_states + 0.8 * jnp.eye(num_states),
            constraints.simplex,
        )
        scale = jsvi.param("scale", 1.0, constraints.positive)
        with jsvi.plate("states", num_states):
            locs = jsvi.sample("locs", dist.Normal(0.0, 5.0))

        def step(s, inputs):
            y, t = inputs
            probs = jnp.where(t == 0, init, trans[s])  # the first state: init
            s = jsvi.sample("s", dist.Categorical(probs))
            jsvi.sample("y", dist.Normal(locs[s], scale), obs=y)
            return s, None

        with jsvi.plate("sequences", ys.shape[0]):
            start = jnp.zeros(ys.shape[0], jnp.int32)
            jsvi.scan(step, start, (ys.T, jnp.arange(ys.shape[1])))

    def guide(ys):
        del ys
        m = jsvi.param("locs_loc", start)
        sd = jsvi.param("locs_scale", 0.1 * jnp.ones(num_states), constraints.positive)
        with jsvi.plate("states", num_states):
            jsvi.sample("locs", dist.Normal(m, sd))

    return model, guide


def fit(num_states: int, ys: jax.Array, num_steps: int = NUM_STEPS):
    """Train; return the model, guide, fitted parameters and the losses."""
    model, guide = make_model(num_states)
    svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.TraceEnum_ELBO())
    state, losses = jsvi.svi_run(
        svi, jax.random.key(0), num_steps, ys, progress_bar=False
    )
    return model, guide, jsvi.get_params(svi, state), losses


def viterbi(model, params: dict, ys: jax.Array) -> np.ndarray:
    """The most likely state path of every sequence, (NUM_SEQUENCES, LENGTH)."""
    fixed = handlers.substitute(model, data={**params, "locs": params["locs_loc"]})

    @jax.jit
    def decode(ys):
        tr = handlers.trace(jsvi.infer_discrete(fixed, temperature=0)).get_trace(ys)
        return tr["s"].value.reshape(ys.shape[1], ys.shape[0]).T  # (time, seq)

    return np.asarray(decode(ys))


def loo(model, guide, params: dict, ys: jax.Array, num_draws: int = 200):
    """ArviZ's PSIS-LOO over the sequences, at draws of the state means."""
    import arviz as az

    fitted_guide = handlers.substitute(guide, data=params)

    def draw(key):
        return (
            handlers.trace(handlers.seed(fitted_guide, key)).get_trace(ys)["locs"].value
        )

    locs = jax.vmap(draw)(jax.random.split(jax.random.key(2), num_draws))
    model_params = {k: params[k] for k in ("init", "trans", "scale")}
    fixed = handlers.substitute(model, data=model_params)
    ll = jsvi.log_likelihood(fixed, {"locs": locs}, ys)  # "y": (draws, sequences)
    idata = jsvi.to_arviz({"locs": locs}, log_likelihood={"y": ll["y"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.loo(idata, var_name="y")


if __name__ == "__main__":
    states, ys = make_data(jax.random.key(0))
    model, guide, params, losses = fit(3, ys)
    path = viterbi(model, params, ys)
    print(f"3 states: final loss {float(losses[-1]):.2f}")
    print("learned means:", np.round(np.asarray(params["locs_loc"]), 2))
    print(
        f"Viterbi path agrees with the true states at {np.mean(path == np.asarray(states)):.0%}"
    )
    for k in (2, 3, 4):
        m, g, p, _ = fit(k, ys)
        print(f"K={k}: elpd_loo {float(loo(m, g, p, ys).elpd_loo):.1f}")
