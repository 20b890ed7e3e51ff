"""A catalogue of well-formed programs the checks must accept (no false alarms).

It holds every model of the SVI Part I and Part III tutorials and of the two user
questions the project started from (model-side params under SVI; ``log_prob_sum``
of traces), plus the shapes users write most: plates nested and subsampled,
``to_event``, constrained and pytree params, autoguides, enumeration in the model
and in the guide, masks and scales, ``factor`` and ``deterministic``. Each passes
``jsvi.validate`` with its estimator and ``svi_init`` (which runs the same checks),
and the report names the gradient estimator each latent site gets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints, handlers
from jsvi.autoguide import AutoDelta, AutoMultivariateNormal, AutoNormal

COIN = jnp.array([1.0] * 6 + [0.0] * 4)
X = jnp.array([0.3, -1.2, 2.1, 0.7, -0.4, 1.5])
FEATURES = jax.random.normal(jax.random.key(1), (6, 3))
LABELS = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
COUNTS = jnp.array([2, 0, 3, 1, 4, 2], jnp.int32)
CLASSES = jnp.array([0, 2, 1, 1, 0, 2], jnp.int32)
GRID = jnp.arange(6.0).reshape(2, 3)


class Program(NamedTuple):
    model: Callable[..., Any]
    guide: Callable[..., Any]
    args: tuple
    loss: Any
    latent: dict[str, str]  # site -> estimator, as the report must name it


PROGRAMS: dict[str, Program] = {}


def program(name: str, *args: Any) -> None:
    assert name not in PROGRAMS
    PROGRAMS[name] = Program(*args)


def empty_guide(*args, **kwargs):
    del args, kwargs


# --- SVI Part I: the coin -------------------------------------------------------------
def coin_model(data):
    f = jsvi.sample("latent_fairness", dist.Beta(10.0, 10.0))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("obs", dist.Bernoulli(f), obs=data)


def coin_guide(data):
    del data
    a = jsvi.param("alpha_q", 15.0, constraint=constraints.positive)
    b = jsvi.param("beta_q", 15.0, constraint=constraints.positive)
    jsvi.sample("latent_fairness", dist.Beta(a, b))


program("partI_coin", coin_model, coin_guide, (COIN,), jsvi.Trace_ELBO(),
        {"latent_fairness": "pathwise"})


def coin_model_sequential(data):
    f = jsvi.sample("latent_fairness", dist.Beta(10.0, 10.0))
    for i in jsvi.plate("data_loop", data.shape[0]):
        jsvi.sample(f"obs_{i}", dist.Bernoulli(f), obs=data[i])


program("partI_coin_sequential_plate", coin_model_sequential, coin_guide, (COIN,),
        jsvi.Trace_ELBO(), {"latent_fairness": "pathwise"})


def coin_model_no_plate(data):
    f = jsvi.sample("latent_fairness", dist.Beta(10.0, 10.0))
    for i in range(data.shape[0]):
        jsvi.sample(f"obs_{i}", dist.Bernoulli(f), obs=data[i])


program("partI_coin_python_loop", coin_model_no_plate, coin_guide, (COIN,),
        jsvi.Trace_ELBO(num_particles=4), {"latent_fairness": "pathwise"})


# --- SVI Part III: score functions and baselines ----------------------------------------
def nonreparam_coin_guide(baseline):
    def guide(data):
        del data
        a = jsvi.param("alpha_q", 15.0, constraint=constraints.positive)
        b = jsvi.param("beta_q", 15.0, constraint=constraints.positive)
        infer = {"baseline": baseline} if baseline else None
        jsvi.sample("latent_fairness", dist.NonReparameterized(dist.Beta(a, b)),
                    infer=infer)

    return guide


SF = {"latent_fairness": "score-function"}
program("partIII_coin_no_baseline", coin_model, nonreparam_coin_guide(None), (COIN,),
        jsvi.TraceGraph_ELBO(), SF)
program("partIII_coin_decaying_average", coin_model,
        nonreparam_coin_guide({"use_decaying_avg_baseline": True, "baseline_beta": 0.9}),
        (COIN,), jsvi.TraceGraph_ELBO(), SF)


def value_baseline_guide(data):
    del data
    p = jsvi.param("p", 0.5, constraint=constraints.unit_interval)
    b = jsvi.param("baseline_b", -5.0)
    jsvi.sample("z", dist.Bernoulli(p), infer={"baseline": {"baseline_value": b}})


def bernoulli_model(data):
    z = jsvi.sample("z", dist.Bernoulli(0.5))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("x", dist.Normal(2.0 * z, 1.0), obs=data)


program("partIII_baseline_value", bernoulli_model, value_baseline_guide, (X,),
        jsvi.TraceGraph_ELBO(), {"z": "score-function"})


def nn_baseline_guide(data):
    w = jsvi.param("baseline_w", {"w": jnp.zeros(()), "b": jnp.zeros(())})
    probs = jsvi.param("probs", jnp.full(data.shape[0], 0.5),
                       constraint=constraints.unit_interval)
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("c", dist.Bernoulli(probs), infer={"baseline": {
            "nn_baseline": lambda x: w["w"] * x + w["b"], "nn_baseline_input": data}})


def local_bernoulli_model(data):
    with jsvi.plate("data", data.shape[0]):
        c = jsvi.sample("c", dist.Bernoulli(0.5))
        jsvi.sample("x", dist.Normal(3.0 * c, 1.0), obs=data)


program("partIII_nn_baseline_per_datum", local_bernoulli_model, nn_baseline_guide, (X,),
        jsvi.TraceGraph_ELBO(), {"c": "score-function"})


def minibatch_model(data):
    mu = jsvi.sample("mu", dist.Normal(0.0, 10.0))
    with jsvi.plate("data", data.shape[0], subsample_size=3) as idx:
        z = jsvi.sample("z", dist.Bernoulli(0.5))
        jsvi.sample("x", dist.Normal(mu + z, 1.0), obs=data[idx])


def minibatch_guide(data):
    m = jsvi.param("m", 0.0)
    p = jsvi.param("p", jnp.full(data.shape[0], 0.5), constraint=constraints.unit_interval)
    jsvi.sample("mu", dist.Normal(m, 1.0))
    with jsvi.plate("data", data.shape[0], subsample_size=3) as idx:
        jsvi.sample("z", dist.Bernoulli(p[idx]))


program("partIII_rao_blackwell_minibatch", minibatch_model, minibatch_guide, (X,),
        jsvi.TraceGraph_ELBO(), {"mu": "pathwise", "z": "score-function"})


# --- model-side params: the forum mixture, MLE, log_prob_sum ----------------------------
def mixture_model(data):
    a0 = jsvi.param("a0", -1.0)
    a1 = jsvi.param("a1", 1.0)
    with jsvi.plate("data", data.shape[0], dim=-1):
        z = jsvi.sample("z", dist.Bernoulli(0.4))
        jsvi.sample("x", dist.Normal(jnp.where(z > 0, a1, a0), 1.0), obs=data)


program("forum_mixture_empty_guide", jsvi.config_enumerate(mixture_model), empty_guide,
        (X,), jsvi.TraceEnum_ELBO(num_particles=10), {"z": "enumerated"})


def mixture_full_guide(data):
    p = jsvi.param("q", 0.5, constraint=constraints.unit_interval)
    with jsvi.plate("data", data.shape[0], dim=-1):
        jsvi.sample("z", dist.Bernoulli(p))


# (with TraceEnum_ELBO nothing would be enumerated here: it warns, as Pyro does)
program("forum_mixture_full_guide", mixture_model, mixture_full_guide, (X,),
        jsvi.TraceGraph_ELBO(num_particles=10), {"z": "score-function"})


def mle_model(data):
    mu = jsvi.param("mu", 0.0)
    sigma = jsvi.param("sigma", 1.0, constraint=constraints.positive)
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("x", dist.Normal(mu, sigma), obs=data)


program("mle_empty_guide", mle_model, empty_guide, (X,), jsvi.Trace_ELBO(), {})


def logp_model(data):
    scale = jsvi.param("scale", 1.0, constraint=constraints.positive)
    z = jsvi.sample("z", dist.Normal(0.0, scale))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=data)


def logp_guide(data):
    del data
    loc = jsvi.param("loc", 0.0)
    s = jsvi.param("s", 1.0, constraint=constraints.positive)
    jsvi.sample("z", dist.Normal(loc, s))


program("log_prob_sum_question", logp_model, logp_guide, (X,), jsvi.Trace_ELBO(),
        {"z": "pathwise"})
program("mean_field_normal", logp_model, logp_guide, (X,), jsvi.TraceMeanField_ELBO(),
        {"z": "pathwise"})


# --- regression and autoguides --------------------------------------------------------
def logistic_model(x, y):
    w = jsvi.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
    b = jsvi.sample("b", dist.Normal(0.0, 5.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def logistic_guide(x, y):
    del y
    loc = jsvi.param("w_loc", jnp.zeros(x.shape[1]))
    scale = jsvi.param("w_scale", jnp.ones(x.shape[1]), constraint=constraints.positive)
    jsvi.sample("w", dist.Normal(loc, scale).to_event(1))
    jsvi.sample("b", dist.Normal(jsvi.param("b_loc", 0.0), 1.0))


program("logistic_regression", logistic_model, logistic_guide, (FEATURES, LABELS),
        jsvi.Trace_ELBO(), {"w": "pathwise", "b": "pathwise"})


def linear_model(x, y):
    w = jsvi.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
    sigma = jsvi.sample("sigma", dist.HalfNormal(1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("y", dist.Normal(x @ w, sigma), obs=y)


for name, guide_cls in (("auto_normal", AutoNormal), ("auto_delta", AutoDelta),
                        ("auto_mvn", AutoMultivariateNormal)):
    program(f"linear_regression_{name}", linear_model, guide_cls(linear_model),
            (FEATURES, X), jsvi.Trace_ELBO(), {"w": "pathwise", "sigma": "pathwise"})


# --- supports, shapes and structure ---------------------------------------------------
def gamma_poisson_model(counts):
    rate = jsvi.sample("rate", dist.Gamma(2.0, 1.0))
    with jsvi.plate("data", counts.shape[0]):
        jsvi.sample("n", dist.Poisson(rate), obs=counts)


def lognormal_guide(counts):
    del counts
    jsvi.sample("rate", dist.LogNormal(jsvi.param("log_loc", 0.0), 0.5))


program("gamma_poisson_lognormal_guide", gamma_poisson_model, lognormal_guide,
        (COUNTS,), jsvi.Trace_ELBO(), {"rate": "pathwise"})


def delta_guide(counts):
    del counts
    r = jsvi.param("rate_map", 1.0, constraint=constraints.positive)
    jsvi.sample("rate", dist.Delta(r))


program("gamma_poisson_delta_guide", gamma_poisson_model, delta_guide, (COUNTS,),
        jsvi.Trace_ELBO(), {"rate": "pathwise"})


def dirichlet_model(classes):
    p = jsvi.sample("p", dist.Dirichlet(jnp.ones(3)))
    with jsvi.plate("data", classes.shape[0]):
        jsvi.sample("c", dist.Categorical(probs=p), obs=classes)


def dirichlet_guide(classes):
    del classes
    conc = jsvi.param("conc", jnp.ones(3), constraint=constraints.positive)
    jsvi.sample("p", dist.Dirichlet(conc))


program("dirichlet_categorical", dirichlet_model, dirichlet_guide, (CLASSES,),
        jsvi.TraceMeanField_ELBO(), {"p": "pathwise"})


def mvn_model(data):
    z = jsvi.sample("z", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("x", dist.Normal(z[0] + z[1], 1.0), obs=data)


def mvn_guide(data):
    del data
    loc = jsvi.param("loc", jnp.zeros(2))
    tril = jsvi.param("tril", jnp.eye(2), constraint=constraints.lower_cholesky)
    jsvi.sample("z", dist.MultivariateNormal(loc, scale_tril=tril))


program("multivariate_normal_latent", mvn_model, mvn_guide, (X,), jsvi.Trace_ELBO(),
        {"z": "pathwise"})


def grid_model(grid):
    with jsvi.plate("rows", grid.shape[0], dim=-2), jsvi.plate("cols", grid.shape[1]):
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 1.0), obs=grid)


def grid_guide(grid):
    loc = jsvi.param("loc", jnp.zeros(grid.shape))
    with jsvi.plate("rows", grid.shape[0], dim=-2), jsvi.plate("cols", grid.shape[1]):
        jsvi.sample("z", dist.Normal(loc, 1.0))


program("nested_plates_local_latents", grid_model, grid_guide, (GRID,),
        jsvi.Trace_ELBO(), {"z": "pathwise"})


def masked_model(data):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    keep = jnp.arange(data.shape[0]) % 2 == 0
    with jsvi.plate("data", data.shape[0]), handlers.mask(mask=keep):
        with handlers.scale(factor=2.0):
            jsvi.sample("x", dist.Normal(mu, 1.0), obs=data)
    jsvi.deterministic("mu_twice", 2.0 * mu)
    jsvi.factor("soft_constraint", -0.5 * mu**2)


def mu_guide(data):
    del data
    jsvi.sample("mu", dist.Normal(jsvi.param("m", 0.0), 1.0))


program("mask_scale_factor_deterministic", masked_model, mu_guide, (X,),
        jsvi.Trace_ELBO(), {"mu": "pathwise"})


def user_subsample_model(data, idx):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", data.shape[0], subsample=idx):
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=data[idx])


def user_subsample_guide(data, idx):
    del data, idx
    jsvi.sample("mu", dist.Normal(jsvi.param("m", 0.0), 1.0))


program("user_subsample_indices", user_subsample_model, user_subsample_guide,
        (X, jnp.array([0, 2, 4])), jsvi.Trace_ELBO(), {"mu": "pathwise"})


def amortized_model(data):
    with jsvi.plate("data", data.shape[0]):
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 0.5), obs=data)


def amortized_guide(data):
    net = jsvi.param("encoder", {"w": jnp.ones((1, 2)), "b": jnp.zeros(2)})
    out = data[:, None] @ net["w"] + net["b"]
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("z", dist.Normal(out[:, 0], jnp.exp(out[:, 1])))


program("amortized_pytree_params", amortized_model, amortized_guide, (X,),
        jsvi.Trace_ELBO(), {"z": "pathwise"})


def chain_model(data):
    probs = jnp.array([[0.8, 0.2], [0.3, 0.7]])
    s = jsvi.sample("s0", dist.Categorical(probs=jnp.array([0.5, 0.5])))
    for t in range(data.shape[0]):
        s = jsvi.sample(f"s{t + 1}", dist.Categorical(probs=probs[s]))
        jsvi.sample(f"x{t}", dist.Normal(2.0 * s, 1.0), obs=data[t])


program("hmm_chain_enumerated", jsvi.config_enumerate(chain_model), empty_guide,
        (X[:3],), jsvi.TraceEnum_ELBO(max_plate_nesting=0),
        {"s0": "enumerated", "s1": "enumerated", "s2": "enumerated", "s3": "enumerated"})


def guide_enum_guide(data):
    p = jsvi.param("q", 0.5, constraint=constraints.unit_interval)
    with jsvi.plate("data", data.shape[0], dim=-1):
        jsvi.sample("z", dist.Bernoulli(p), infer={"enumerate": "parallel"})


program("guide_side_enumeration", mixture_model, guide_enum_guide, (X,),
        jsvi.TraceEnum_ELBO(), {"z": "enumerated"})


def masked_over_plate_model(x):
    mu = jsvi.param("mu", 0.0)
    keep = jnp.arange(x.shape[0]) % 2 == 0
    with jsvi.plate("data", x.shape[0]):
        # a mask shaped like the plate on a scalar distribution broadcasts
        jsvi.sample("x", dist.Normal(mu, 1.0).mask(keep), obs=x)


program("distribution_mask_over_plate", masked_over_plate_model, lambda x: None, (X,),
        jsvi.Trace_ELBO(), {})


def boundary_model(y):
    p = jsvi.sample("p", dist.Uniform(0.0, 1.0))
    jsvi.factor("log_p", jnp.log(p))  # -inf at the boundary p = 0
    with jsvi.plate("data", y.shape[0]):
        jsvi.sample("y", dist.Bernoulli(p), obs=y)


program("uniform_latent_under_autonormal", boundary_model, AutoNormal(boundary_model),
        (LABELS,), jsvi.Trace_ELBO(), {"p": "pathwise"})


def positional_sequential_plate_model(x):
    mu = jsvi.param("mu", 0.0)
    for j, i in enumerate(jsvi.plate("points", x.shape[0], subsample_size=2)):
        jsvi.sample(f"x_{j}", dist.Normal(mu, 1.0), obs=x[i])


program("sequential_subsampled_plate", positional_sequential_plate_model,
        lambda x: None, (X,), jsvi.Trace_ELBO(), {})


# --- everyday idioms: local params, deterministic sites, missing data ------------------
def local_param_model(data):
    with jsvi.plate("data", data.shape[0], subsample_size=3) as idx:
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 1.0), obs=data[idx])


def local_param_guide(data):
    n = data.shape[0]
    with jsvi.plate("data", n, subsample_size=3):
        loc = jsvi.param("z_loc", jnp.zeros(n), event_dim=0)
        scale = jsvi.param("z_scale", jnp.ones(n), constraint=constraints.positive,
                           event_dim=0)
        jsvi.sample("z", dist.Normal(loc, scale))


program("local_params_in_subsampled_plate", local_param_model, local_param_guide, (X,),
        jsvi.Trace_ELBO(), {"z": "pathwise"})


def missing_data_model(data, observed):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", data.shape[0]):
        y = jsvi.sample("y", dist.Normal(mu, 1.0), obs=data, obs_mask=observed)
        jsvi.deterministic("y_centred", y - mu)


X_MISSING = X.at[jnp.array([1, 4])].set(jnp.nan)
program("obs_mask_imputed_by_autonormal", missing_data_model, AutoNormal(missing_data_model),
        (X_MISSING, ~jnp.isnan(X_MISSING)), jsvi.Trace_ELBO(),
        {"mu": "pathwise", "y_unobserved": "pathwise"})


def subsampled_data_model(data):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", data.shape[0], subsample_size=3):
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=jsvi.subsample(data, event_dim=0))


program("subsample_primitive", subsampled_data_model, mu_guide, (X,), jsvi.Trace_ELBO(),
        {"mu": "pathwise"})


def plate_stack_model(data):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate_stack("batch", data.shape):
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=data)


program("plate_stack_over_a_grid", plate_stack_model, mu_guide, (GRID,), jsvi.Trace_ELBO(),
        {"mu": "pathwise"})


@handlers.scope(prefix="part")
def scoped_model(data):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", data.shape[0]), handlers.scale(factor=0.5):
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=data)


program("scoped_model_decorated_handlers", scoped_model, AutoNormal(scoped_model), (X,),
        jsvi.Trace_ELBO(), {"part/mu": "pathwise"})


def prior_scale_model(data):
    s = jsvi.param("s")  # no init: the guide's "s", declared before the model runs
    mu = jsvi.sample("mu", dist.Normal(0.0, s))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=data)


def prior_scale_guide(data):
    del data
    jsvi.param("s", 2.0, constraint=constraints.positive)
    jsvi.sample("mu", dist.Normal(jsvi.param("m", 0.0), jsvi.param("s")))


program("param_read_again_without_init", prior_scale_model, prior_scale_guide, (X,),
        jsvi.Trace_ELBO(), {"mu": "pathwise"})


def _programs() -> list:
    return [pytest.param(name, p, id=name) for name, p in PROGRAMS.items()]


def test_catalogue_has_at_least_twenty_programs():
    assert len(PROGRAMS) >= 20, len(PROGRAMS)


@pytest.mark.parametrize("name,p", _programs())
def test_validate_accepts(name, p):
    del name
    report = jsvi.validate(p.model, p.guide, *p.args, loss=p.loss)
    assert report.ok
    assert dict(report.latent) == p.latent
    assert report.loss == type(p.loss).__name__
    log_p, log_q = report.log_density
    assert jnp.isfinite(log_p) and jnp.isfinite(log_q)
    for site in p.latent:
        assert site in report.model_table


@pytest.mark.parametrize("name,p", _programs())
def test_svi_init_accepts(name, p):
    del name
    svi = jsvi.SVI(p.model, p.guide, optax.adam(1e-2), p.loss)
    state = jsvi.svi_init(svi, 0, *p.args)
    assert int(state.step) == 0


@pytest.mark.parametrize("name,p", _programs())
def test_svi_update_accepts(name, p):
    """The checks that run when a step is compiled raise nothing either."""
    del name
    svi = jsvi.SVI(p.model, p.guide, optax.adam(1e-2), p.loss)
    state = jsvi.svi_init(svi, 0, *p.args)
    state, loss = jsvi.svi_update(svi, state, *p.args)
    assert int(state.step) + int(state.num_rejected) == 1


def test_traced_integer_seeds():
    draw = jax.vmap(
        lambda s: handlers.seed(lambda: jsvi.sample("z", dist.Normal(0.0, 1.0)), rng_key=s)()
    )(jnp.arange(3))
    assert draw.shape == (3,) and len(set(draw.tolist())) == 3


def test_report_prints_both_tables():
    text = str(jsvi.validate(coin_model, coin_guide, COIN, loss=jsvi.Trace_ELBO()))
    assert text.startswith("jsvi.validate: ok (Trace_ELBO's checks included).")
    assert "guide:" in text and "model:" in text
    assert "latent_fairness" in text and "data@-1" in text
