"""RenyiELBO: the IWAE bound's value and gradient against Gauss-Hermite quadrature,
its tightening with K, DReG's mean and variance, and the typed errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi.errors import ArgumentError, SiteError
from jsvi.testing import assert_mc_close

X_OBS = 1.3
LOG_EVIDENCE = float(dist.Normal(0.0, np.sqrt(2.0)).log_prob(X_OBS))
PARAMS = {"theta": jnp.array(0.1), "m": jnp.array(0.2), "s": jnp.array(0.9)}


def model():
    z = jsvi.sample("z", dist.Normal(0.0, 1.0))
    jsvi.sample("x", dist.Normal(z, 1.0), obs=X_OBS)


def theta_model():
    """A model with a parameter: z ~ N(theta, 1), x ~ N(z, 1)."""
    z = jsvi.sample("z", dist.Normal(jsvi.param("theta", 0.0), 1.0))
    jsvi.sample("x", dist.Normal(z, 1.0), obs=X_OBS)


def make_guide(reparam=True):
    def guide():
        q = dist.Normal(jsvi.param("m", 0.0), jsvi.param("s", 1.0, jsvi.constraints.positive))
        jsvi.sample("z", q if reparam else dist.NonReparameterized(q))

    return guide


def _log_w(z, eps, theta, m, s):
    """log p(x, z) - log q(z) with z = m + s * eps (written out by hand)."""
    log_p = -0.5 * (z - theta) ** 2 - 0.5 * (X_OBS - z) ** 2 - jnp.log(2 * jnp.pi)
    log_q = -0.5 * eps**2 - jnp.log(s) - 0.5 * jnp.log(2 * jnp.pi)
    return log_p - log_q


def exact_loss_k2(p, alpha=0.0, n=64):
    """E[-L_alpha] at K=2 by a 64x64-node Gauss-Hermite rule over (eps_1, eps_2)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    weights = weights / weights.sum()
    e1, e2 = np.meshgrid(nodes, nodes, indexing="ij")
    w = jnp.asarray(np.outer(weights, weights))
    lw = jnp.stack(
        [_log_w(p["m"] + p["s"] * e, e, p["theta"], p["m"], p["s"]) for e in (e1, e2)]
    )
    bound = (jax.nn.logsumexp((1 - alpha) * lw, axis=0) - jnp.log(2.0)) / (1 - alpha)
    return -jnp.sum(w * bound)


def draws(estimator, mdl, guide, params, num, key, grad=False):
    keys = jax.random.split(jax.random.key(key), num)

    def one(k):
        loss_fn = lambda p: estimator.loss(k, p, mdl, guide)  # noqa: E731
        if not grad:
            return loss_fn(params)
        g = jax.grad(loss_fn)(params)
        return jnp.stack([g[name] for name in sorted(params)])

    return np.asarray(jax.jit(jax.vmap(one))(keys))


@pytest.mark.statistical
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_mean_loss_is_the_exact_expectation(alpha):
    est = jsvi.RenyiELBO(alpha=alpha, num_particles=2)
    losses = draws(est, theta_model, make_guide(), PARAMS, 4000, key=1)
    assert_mc_close(losses, float(exact_loss_k2(PARAMS, alpha)))


@pytest.mark.statistical
@pytest.mark.parametrize(
    "reparam,dreg",
    [(True, False), (False, False), (True, True)],
    ids=["pathwise", "score-function", "dreg"],
)
def test_gradient_is_unbiased(reparam, dreg):
    """The mean gradient in (m, s, theta) equals the quadrature's exact gradient."""
    est = jsvi.RenyiELBO(num_particles=2, doubly_reparameterized=dreg)
    grads = draws(est, theta_model, make_guide(reparam), PARAMS, 4000, key=2, grad=True)
    exact = jax.grad(exact_loss_k2)(PARAMS)
    assert_mc_close(grads, np.array([exact[n] for n in sorted(PARAMS)]), z=4.5)


def test_one_particle_is_the_elbo():
    params = {"m": jnp.array(0.2), "s": jnp.array(0.9)}

    @jax.jit
    def both(k):
        return (jsvi.RenyiELBO(num_particles=1).loss(k, params, model, make_guide()),
                jsvi.Trace_ELBO().loss(k, params, model, make_guide()))

    for key in range(3):
        a, b = both(jax.random.key(key))
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_exact_posterior_gives_log_evidence_for_any_k():
    params = {"m": jnp.array(X_OBS / 2), "s": jnp.array(np.sqrt(0.5))}

    @jax.jit
    def losses(params):
        return [
            jsvi.RenyiELBO(num_particles=k).loss(jax.random.key(0), params, model, make_guide())
            for k in (2, 16)
        ]

    np.testing.assert_allclose(-np.array(losses(params)), LOG_EVIDENCE, rtol=1e-5)


def _exact_elbo(m, s):
    return (
        -np.log(2 * np.pi) - (m**2 + s**2) / 2 - ((X_OBS - m) ** 2 + s**2) / 2
        + 0.5 * np.log(2 * np.pi) + np.log(s) + 0.5
    )


@pytest.mark.statistical
def test_bound_tightens_with_k_towards_the_log_evidence():
    """-loss rises with K above the exact ELBO, stays below log p(x), and its gap
    shrinks like chi2 / (2K), the delta-method gap, chi2 = Var_q[w / p(x)]."""
    m, s = 0.2, 0.9
    params = {"m": jnp.array(m), "s": jnp.array(s)}
    # chi2 = E_q[(post / q)^2] - 1 by a 1-D Gauss-Hermite rule, z = m + s eps
    eps, wts = np.polynomial.hermite_e.hermegauss(120)
    z = m + s * eps
    ratio = np.exp(
        dist.Normal(X_OBS / 2, np.sqrt(0.5)).log_prob(z) - dist.Normal(m, s).log_prob(z)
    )
    chi2 = float(np.sum(wts / wts.sum() * ratio**2) - 1.0)
    bounds, ses = [], []
    for k in (1, 4, 64):
        b = -draws(jsvi.RenyiELBO(num_particles=k), model, make_guide(), params, 2000, key=k)
        bounds.append(b.mean())
        ses.append(b.std(ddof=1) / np.sqrt(b.size))
    bounds, ses = np.array(bounds), np.array(ses)
    assert abs(bounds[0] - _exact_elbo(m, s)) <= 4 * ses[0]
    assert np.all(np.diff(bounds) > 4 * np.hypot(ses[1:], ses[:-1])), bounds
    assert bounds[-1] <= LOG_EVIDENCE + 4 * ses[-1]
    # at K=64 the delta method's O(1/K^2) remainder is far below the MC error
    gap = LOG_EVIDENCE - bounds[-1]
    assert abs(gap - chi2 / (2 * 64)) <= 4 * ses[-1], (gap, chi2 / 128)


@pytest.mark.statistical
def test_dreg_has_the_same_mean_gradient_and_lower_variance():
    """Paired draws (same keys) at K=8: mean difference zero within 4.5 SE, and
    the per-draw squared deviation smaller for DReG by more than 4 SE."""
    est = jsvi.RenyiELBO(num_particles=8)
    dreg = jsvi.RenyiELBO(num_particles=8, doubly_reparameterized=True)
    a = draws(est, theta_model, make_guide(), PARAMS, 2000, key=5, grad=True)
    b = draws(dreg, theta_model, make_guide(), PARAMS, 2000, key=5, grad=True)
    assert_mc_close(b - a, np.zeros(3), z=4.5)
    guide_cols = [0, 1]  # sorted names: m, s, theta
    d = (a - a.mean(0)) ** 2 - (b - b.mean(0)) ** 2
    se = d.std(0, ddof=1) / np.sqrt(d.shape[0])
    assert np.all(d.mean(0)[guide_cols] > 4 * se[guide_cols]), (d.mean(0), se)
    ratio = b.var(0)[guide_cols] / a.var(0)[guide_cols]
    assert np.all(ratio < 1.0), ratio


def test_dreg_rejects_a_non_reparameterized_site_by_name():
    est = jsvi.RenyiELBO(num_particles=2, doubly_reparameterized=True)
    with pytest.raises(SiteError, match="guide site 'z'.*doubly_reparameterized"):
        est.loss(jax.random.key(0), {"m": 0.0, "s": 1.0}, model, make_guide(reparam=False))


def test_svi_init_reports_dreg_error_before_compiling():
    import optax

    svi = jsvi.SVI(
        model, make_guide(reparam=False), optax.adam(1e-2),
        jsvi.RenyiELBO(doubly_reparameterized=True),
    )
    with pytest.raises(SiteError, match="'z'"):
        jsvi.svi_init(svi, jax.random.key(0))


@pytest.mark.parametrize("kwargs", [{"alpha": 1.0}, {"alpha": float("nan")},
                                    {"num_particles": 0},
                                    {"doubly_reparameterized": 1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ArgumentError, match="RenyiELBO"):
        jsvi.RenyiELBO(**kwargs)


def test_dreg_trains_to_the_posterior_with_svi():
    """DReG's gradient vanishes at the exact posterior (every log-weight is then
    log p(x), and d/dz log w = 0), so the final iterate settles there."""
    import optax

    est = jsvi.RenyiELBO(num_particles=4, doubly_reparameterized=True)
    svi = jsvi.SVI(model, make_guide(), optax.adam(5e-2), est)
    state, losses = jsvi.svi_run(svi, jax.random.key(0), 300, progress_bar=False)
    assert np.all(np.isfinite(np.asarray(losses)))
    post = jsvi.get_params(svi, state)
    assert abs(float(post["m"]) - X_OBS / 2) < 0.1 * np.sqrt(0.5)
    assert abs(np.log(float(post["s"])) - np.log(np.sqrt(0.5))) < 0.1
