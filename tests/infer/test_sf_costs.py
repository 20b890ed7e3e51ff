"""Score-function costs: plate-aware costs of Trace_ELBO/TraceEnum_ELBO and the
dependency-graph costs of TraceGraph_ELBO. Unbiased against exact gradients, lower
variance than the costs they replace (kept here only as test subclasses)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.infer import unconstrained_param_fn
from jsvi.infer.costs import (
    downstream_costs,
    graph_costs,
    plate_costs,
    site_dependencies,
)
from jsvi.infer.elbo import elbo_terms

NUM = 2000
Z = 4.5  # about 10 scalars per check
# Two variances from n draws each: a ratio below this is below 1 by more than 4
# (normal-theory) standard errors of each, se(var) / var = sqrt(2 / (n - 1)).
RATIO = (1 - 4 * np.sqrt(2 / (NUM - 1))) / (1 + 4 * np.sqrt(2 / (NUM - 1)))


@dataclasses.dataclass(frozen=True)
class WholeTraceELBO(jsvi.Trace_ELBO):
    """The former Trace_ELBO: every site's cost is the whole particle ELBO."""

    def _score_costs(self, terms):
        return {n: terms.elbo() for n in terms.non_reparam}


@dataclasses.dataclass(frozen=True)
class ExecutionOrderELBO(jsvi.TraceGraph_ELBO):
    """The former TraceGraph_ELBO: costs in execution order."""

    def _costs(self, terms, sites, *rest):
        del rest
        return downstream_costs(terms, sites) if sites else {}


def per_draw_grads(estimator, model, guide, params, *args, key=0, num=NUM):
    keys = jax.random.split(jax.random.key(key), num)

    def grad(k):
        return jax.grad(lambda p: estimator.loss(k, p, model, guide, *args))(params)

    return jax.tree.map(np.asarray, jax.jit(jax.vmap(grad))(keys))


def assert_unbiased(grads, exact):
    for name, value in exact.items():
        g = grads[name]
        mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(g.shape[0])
        err = np.abs(mean - np.asarray(value))
        bound = Z * se + 1e-6 * np.maximum(1.0, np.abs(value))
        assert np.all(err <= bound), (name, mean, value, se)


# --- a Bernoulli latent per data point, a reparameterized global --------------------
XS = jnp.array([0.3, 2.1, -0.4, 1.7, 0.9, 2.5])
PLATE_PARAMS = {"m": jnp.array(0.3), "s": jnp.array(0.8), "u": jnp.linspace(-1.0, 1.0, 6)}


def plate_model(x):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        z = jsvi.sample("z", dist.Bernoulli(0.4))
        jsvi.sample("x", dist.Normal(mu + 2.0 * z, 1.0), obs=x)


def plate_guide(x):
    m = jsvi.param("m", 0.0)
    s = jsvi.param("s", 1.0, constraint=constraints.positive)
    jsvi.sample("mu", dist.Normal(m, s))
    u = jsvi.param("u", jnp.zeros(x.shape[0]))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("z", dist.Bernoulli(logits=u))


def plate_exact_loss(p):
    """-ELBO in closed form: Gaussian expectations over mu, a sum over each z_n."""
    m, s = p["m"], p["s"]
    half_log_2pi = 0.5 * jnp.log(2 * jnp.pi)
    elbo = -half_log_2pi - 0.5 * (m**2 + s**2) + 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2)
    q1 = jax.nn.sigmoid(p["u"])
    for z, qz in ((0.0, 1 - q1), (1.0, q1)):
        lik = -half_log_2pi - 0.5 * ((XS - 2 * z - m) ** 2 + s**2)
        elbo = elbo + jnp.sum(qz * (dist.Bernoulli(0.4).log_prob(z) + lik - jnp.log(qz)))
    return -elbo


@pytest.mark.statistical
@pytest.mark.parametrize("name", ["Trace_ELBO", "TraceEnum_ELBO", "TraceGraph_ELBO"])
def test_plate_aware_costs_unbiased(name):
    grads = per_draw_grads(getattr(jsvi, name)(), plate_model, plate_guide, PLATE_PARAMS, XS)
    assert_unbiased(grads, jax.grad(plate_exact_loss)(PLATE_PARAMS))


@pytest.mark.statistical
def test_plate_aware_costs_lower_variance_than_whole_trace():
    new = per_draw_grads(jsvi.Trace_ELBO(), plate_model, plate_guide, PLATE_PARAMS, XS)
    old = per_draw_grads(WholeTraceELBO(), plate_model, plate_guide, PLATE_PARAMS, XS)
    ratio = new["u"].var(0) / old["u"].var(0)
    # each element drops the other five elements' terms from its cost
    assert np.all(ratio < RATIO), ratio
    # pathwise parts are untouched
    np.testing.assert_allclose(new["m"], old["m"], rtol=1e-6)


def test_trace_enum_without_enumeration_matches_trace_elbo():
    a = per_draw_grads(jsvi.Trace_ELBO(), plate_model, plate_guide, PLATE_PARAMS, XS, num=8)
    b = per_draw_grads(
        jsvi.TraceEnum_ELBO(), plate_model, plate_guide, PLATE_PARAMS, XS, num=8
    )
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_each_particle_keeps_its_own_cost():
    """The gradient of a 3-particle loss is the mean of the particles' own gradients."""
    key = jax.random.key(3)
    singles = per_draw_grads(jsvi.Trace_ELBO(), plate_model, plate_guide, PLATE_PARAMS, XS,
                             key=3, num=3)
    for vectorize in (True, False):
        est = jsvi.Trace_ELBO(num_particles=3, vectorize_particles=vectorize)
        grad = jax.jit(jax.grad(lambda p, e=est: e.loss(key, p, plate_model, plate_guide, XS)))
        np.testing.assert_allclose(
            grad(PLATE_PARAMS)["u"], singles["u"].mean(0), rtol=1e-5, atol=1e-6
        )


def _terms(model, guide, *args):
    return elbo_terms(jax.random.key(0), model, guide, unconstrained_param_fn({}), args, {})


def test_plate_costs_keep_elements_apart_and_sum_outside_terms():
    terms = _terms(plate_model, plate_guide, XS)
    cost = plate_costs(terms, ["z"])["z"]
    lp, lq = terms.log_p, terms.log_q
    glob = lp["mu"] - lq["mu"]
    np.testing.assert_allclose(cost, glob + lp["z"] + lp["x"] - lq["z"], rtol=1e-5)
    assert cost.shape == (6,)


def test_plate_costs_summed_when_a_later_guide_site_leaves_the_plate():
    """A global drawn after the plate may carry one element's draw to the others."""

    def guide(x):
        with jsvi.plate("data", x.shape[0]):
            z = jsvi.sample("z", dist.Bernoulli(0.3))
        jsvi.sample("mu", dist.Normal(jnp.mean(z), 1.0))

    terms = _terms(plate_model, guide, XS)
    cost = plate_costs(terms, ["z"])["z"]
    assert cost.shape == (6,)
    np.testing.assert_allclose(cost, jnp.full(6, terms.elbo()), rtol=1e-5)


# --- TraceGraph_ELBO: a chain of 7 Normal latents --------------------------------
K = 7
X_CHAIN, NOISE = 2.0, 0.3  # a precise observation: a noisy last term
CHAIN_PARAMS = {
    "m": jnp.linspace(-0.5, 0.8, K),
    "s": jnp.linspace(0.6, 1.1, K),
    "w": jnp.array(0.5),
}


def chain_model():
    z = jsvi.sample("z_0", dist.Normal(0.0, 1.0))
    for k in range(1, K):
        z = jsvi.sample(f"z_{k}", dist.Normal(z, 1.0))
    jsvi.sample("x", dist.Normal(z, NOISE), obs=X_CHAIN)


def chain_guide():
    """Mean-field but for z_3 -> z_4: z_3 has one true descendant, the rest none."""
    m = jsvi.param("m", jnp.zeros(K))
    s = jsvi.param("s", jnp.ones(K), constraint=constraints.positive)
    w = jsvi.param("w", 0.0)
    prev = None
    for k in range(K):
        loc = m[k] + (w * prev if k == 4 else 0.0)
        prev = jsvi.sample(f"z_{k}", dist.NonReparameterized(dist.Normal(loc, s[k])))


def chain_exact_loss(p):
    """-ELBO in closed form: each z_k is affine in standard normals eps."""
    eye = jnp.eye(K)
    coef, const = [], []
    for k in range(K):
        a, c = p["s"][k] * eye[k], p["m"][k]
        if k == 4:
            a, c = a + p["w"] * coef[3], c + p["w"] * const[3]
        coef.append(a)
        const.append(c)

    def sq(a, c):  # E[(a . eps + c)^2]
        return jnp.sum(a**2) + c**2

    half_log_2pi = 0.5 * jnp.log(2 * jnp.pi)
    elbo = -half_log_2pi - 0.5 * sq(coef[0], const[0])
    for k in range(1, K):
        elbo = elbo - half_log_2pi - 0.5 * sq(coef[k] - coef[k - 1], const[k] - const[k - 1])
    elbo = elbo - half_log_2pi - jnp.log(NOISE)
    elbo = elbo - 0.5 * sq(-coef[-1], X_CHAIN - const[-1]) / NOISE**2
    elbo = elbo + jnp.sum(jnp.log(p["s"]) + 0.5 * jnp.log(2 * jnp.pi * jnp.e))
    return -elbo


def test_chain_dependencies_are_the_true_graph():
    terms = _terms(chain_model, chain_guide)
    deps = site_dependencies(
        terms, jax.random.key(0), chain_model, chain_guide, unconstrained_param_fn({}), (), {}
    )
    assert deps is not None
    assert deps.guide["z_4"] == {"z_3", "z_4"}
    assert deps.guide["z_2"] == {"z_2"}
    assert deps.model["z_4"] == {"z_3", "z_4"}
    assert deps.model["x"] == {"z_6"}
    assert deps.descendants("z_3") == {"z_3", "z_4"}
    assert deps.descendants("z_1") == {"z_1"}
    costs = graph_costs(terms, ["z_1", "z_3"], deps)
    lp, lq = terms.log_p, terms.log_q
    np.testing.assert_allclose(costs["z_1"], lp["z_1"] + lp["z_2"] - lq["z_1"], rtol=1e-5)
    want = lp["z_3"] + lp["z_4"] + lp["z_5"] - lq["z_3"] - lq["z_4"]
    np.testing.assert_allclose(costs["z_3"], want, rtol=1e-5)


@pytest.mark.statistical
def test_graph_costs_unbiased_and_lower_variance_than_execution_order():
    new = per_draw_grads(jsvi.TraceGraph_ELBO(), chain_model, chain_guide, CHAIN_PARAMS)
    assert_unbiased(new, jax.grad(chain_exact_loss)(CHAIN_PARAMS))
    old = per_draw_grads(ExecutionOrderELBO(), chain_model, chain_guide, CHAIN_PARAMS)
    # z_6 has no more terms in its true cost than in execution order: the same draws
    for k in ("m", "s"):
        np.testing.assert_allclose(new[k][:, -1], old[k][:, -1], rtol=1e-4, atol=1e-5)
        # every other site drops later terms: a lower variance, by a paired test on
        # the same keys (both means are the exact gradient)
        d = (old[k] - old[k].mean(0)) ** 2 - (new[k] - new[k].mean(0)) ** 2
        z_score = d.mean(0) / (d.std(0, ddof=1) / np.sqrt(NUM))
        assert np.all(z_score[:-1] > 4.0), (k, z_score, new[k].var(0) / old[k].var(0))


def test_graph_falls_back_on_execution_order_when_unseen():
    """A Python `if` on a draw hides the graph: costs follow execution order."""

    def guide():
        z = jsvi.sample("z_0", dist.NonReparameterized(dist.Normal(0.0, 1.0)))
        loc = 1.0 if float(z) > 0 else -1.0
        for k in range(1, K):
            jsvi.sample(f"z_{k}", dist.NonReparameterized(dist.Normal(loc, 1.0)))

    terms = _terms(chain_model, guide)
    args = (terms, jax.random.key(0), chain_model, guide, unconstrained_param_fn({}), (), {})
    assert site_dependencies(*args) is None
    est = jsvi.TraceGraph_ELBO()
    got = est._costs(terms, ["z_0", "z_5"], *args[1:])
    want = downstream_costs(terms, ["z_0", "z_5"])
    for n in want:
        np.testing.assert_allclose(got[n], want[n], rtol=1e-6)


# --- TraceEnum_ELBO: a summed-out global beside sampled local sites ---------------
X3 = jnp.array([0.4, 2.6, 1.1])


def enum_model(x):
    c = jsvi.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
    with jsvi.plate("data", x.shape[0]):
        z = jsvi.sample("z", dist.Bernoulli(0.4))
        jsvi.sample("x", dist.Normal(2.0 * z + c, 1.0), obs=x)


def enum_guide(x):
    u = jsvi.param("u", jnp.zeros(x.shape[0]))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("z", dist.Bernoulli(logits=u))


def enum_exact_loss(p):
    """-ELBO by brute force over the 8 values of z (c summed out inside)."""
    q1 = jax.nn.sigmoid(p["u"])
    elbo = 0.0
    for bits in np.ndindex(2, 2, 2):
        z = jnp.asarray(bits, jnp.float32)
        log_q = jnp.sum(jnp.where(z > 0, jnp.log(q1), jnp.log1p(-q1)))
        per_c = [
            jnp.log(0.5) + jnp.sum(dist.Bernoulli(0.4).log_prob(z)
                                   + dist.Normal(2.0 * z + c, 1.0).log_prob(X3))
            for c in (0.0, 1.0)
        ]
        elbo = elbo + jnp.exp(log_q) * (jax.nn.logsumexp(jnp.stack(per_c)) - log_q)
    return -elbo


@pytest.mark.statistical
def test_trace_enum_plate_aware_costs_unbiased_with_a_summed_out_global():
    params = {"u": jnp.array([-0.7, 0.4, 1.2])}
    est = jsvi.TraceEnum_ELBO(max_plate_nesting=1)
    grads = per_draw_grads(est, enum_model, enum_guide, params, X3)
    assert_unbiased(grads, jax.grad(enum_exact_loss)(params))


def test_no_score_function_sites_no_cost_work(monkeypatch):
    """With every guide site reparameterized, no cost is built and no graph traced."""
    import jsvi.infer.trace_elbo as trace_mod
    import jsvi.infer.tracegraph_elbo as graph_mod

    def refuse(*args, **kwargs):
        raise AssertionError("cost work for a model without score-function sites")

    monkeypatch.setattr(trace_mod, "plate_costs", lambda terms, sites: (
        refuse() if sites else {}))
    monkeypatch.setattr(graph_mod, "site_dependencies", refuse)

    def guide(x):
        jsvi.sample("mu", dist.Normal(jsvi.param("m", 0.0), 1.0))
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("z", dist.Normal(0.0, 1.0))

    def model(x):
        mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
        with jsvi.plate("data", x.shape[0]):
            z = jsvi.sample("z", dist.Normal(mu, 1.0))
            jsvi.sample("x", dist.Normal(z, 1.0), obs=x)

    for est in (jsvi.Trace_ELBO(), jsvi.TraceGraph_ELBO()):
        jax.grad(lambda p, e=est: e.loss(jax.random.key(0), p, model, guide, XS))({"m": 0.1})
