"""``jsvi.log_likelihood``: pointwise values against closed-form mixture
densities (local and global enumerated sites, a ``markov`` chain), and
``arviz.loo`` / ``arviz.waic`` on ``to_arviz``'s output."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi.errors import ShapeError, SiteError

RTOL = 1e-5
X = jnp.array([-0.3, 2.9, 0.4, 3.6, 1.2])
LOCS = jnp.array([1.5, 2.5, 3.0])  # three posterior draws of "loc"


def _npdf(x, loc):
    return np.exp(-0.5 * (x - loc) ** 2) / np.sqrt(2 * np.pi)


@jsvi.config_enumerate
def local_mixture(x):
    loc = jsvi.sample("loc", dist.Normal(0.0, 5.0))
    with jsvi.plate("data", x.shape[0]):
        z = jsvi.sample("z", dist.Bernoulli(0.3))
        jsvi.sample("x", dist.Normal(loc * z, 1.0), obs=x)


def test_local_mixture_gives_each_points_mixture_density():
    ll = jsvi.log_likelihood(local_mixture, {"loc": LOCS}, X)
    x, locs = np.asarray(X, np.float64), np.asarray(LOCS, np.float64)
    want = np.log(0.7 * _npdf(x, 0.0) + 0.3 * _npdf(x[None], locs[:, None]))
    assert set(ll) == {"x"}
    np.testing.assert_allclose(ll["x"], want, rtol=RTOL)


W = jnp.array([0.2, 0.5, 0.3])
MUS = jnp.array([-1.0, 1.0, 3.0])


@jsvi.config_enumerate
def global_mixture(x):
    scale = jsvi.sample("scale", dist.LogNormal(0.0, 1.0))
    g = jsvi.sample("g", dist.Categorical(W))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(MUS[g], scale), obs=x)
    jsvi.sample("s", dist.Normal(0.0, scale), obs=0.5)  # no enumerated parent


def test_global_enumerated_site_is_summed_out_per_point():
    scales = jnp.array([0.8, 1.3])
    ll = jsvi.log_likelihood(global_mixture, {"scale": scales}, X)
    x, w, mus = (np.asarray(a, np.float64) for a in (X, W, MUS))
    for i, s in enumerate(np.asarray(scales, np.float64)):
        dens = np.sum(w * _npdf(x[:, None] / s, mus / s) / s, 1)
        np.testing.assert_allclose(ll["x"][i], np.log(dens), rtol=RTOL)
        np.testing.assert_allclose(
            ll["s"][i], np.log(_npdf(0.5 / s, 0.0) / s), rtol=RTOL
        )


INIT = jnp.array([0.6, 0.4])
TRANS = jnp.array([[0.8, 0.2], [0.3, 0.7]])


@jsvi.config_enumerate
def hmm(ys):
    loc = jsvi.sample("loc", dist.Normal(0.0, 5.0))
    s = None
    for t in jsvi.markov(range(ys.shape[0])):
        s = jsvi.sample(f"s_{t}", dist.Categorical(INIT if s is None else TRANS[s]))
        jsvi.sample(f"y_{t}", dist.Normal(loc * s, 1.0), obs=ys[t])


def test_markov_chain_sites_get_their_marginal_density():
    ys = jnp.array([0.1, 2.0, 1.7, -0.2])
    ll = jsvi.log_likelihood(hmm, {"loc": LOCS[:2]}, ys)
    prior = np.asarray(INIT, np.float64)
    for t in range(4):
        for i, loc in enumerate(np.asarray(LOCS[:2], np.float64)):
            dens = prior[0] * _npdf(float(ys[t]), 0.0) + prior[1] * _npdf(
                float(ys[t]), loc
            )
            np.testing.assert_allclose(ll[f"y_{t}"][i], np.log(dens), rtol=RTOL)
        prior = prior @ np.asarray(TRANS, np.float64)


def test_loo_and_waic_run_on_an_svi_style_fit():
    az = pytest.importorskip("arviz")
    x = jnp.concatenate([jnp.zeros(20), 3.0 + jnp.zeros(10)]) + jax.random.normal(
        jax.random.key(0), (30,)
    )
    locs = 3.0 + 0.2 * jax.random.normal(jax.random.key(1), (400,))
    ll = jsvi.log_likelihood(local_mixture, {"loc": locs}, x)
    idata = jsvi.to_arviz(
        {"loc": locs}, log_likelihood=ll, observed_data={"x": np.asarray(x)}
    )
    assert idata.log_likelihood["x"].shape == (1, 400, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ArviZ's single-chain notes
        loo, waic = az.loo(idata), az.waic(idata)
    assert np.isfinite(loo.elpd_loo) and np.isfinite(waic.elpd_waic)
    # the pointwise values sum to the log predictive density ArviZ reports
    lppd = np.sum(np.log(np.mean(np.exp(np.asarray(ll["x"], np.float64)), 0)))
    np.testing.assert_allclose(waic.elpd_waic + waic.p_waic, lppd, rtol=1e-4)


def test_mismatched_draw_counts_are_an_error():
    with pytest.raises(ShapeError, match="log_likelihood"):
        jsvi.log_likelihood(
            global_mixture, {"scale": jnp.ones(3), "g": jnp.zeros(2, int)}, X
        )


# -- chains inside jsvi.scan: one value per sequence ------------------------------

YS = jnp.array(
    [[0.1, 2.0, 1.7, -0.2, 2.4], [1.9, 2.2, -0.4, 0.3, 0.0], [-1.0, 0.2, 2.6, 2.1, 1.8]]
)  # (sequences, T)


@jsvi.config_enumerate
def scan_hmm(ys):
    """A chain per sequence inside ``jsvi.scan``, from a fixed start state 0;
    one observed site outside the chain."""
    loc = jsvi.sample("loc", dist.Normal(0.0, 5.0))

    def step(s, y):
        s = jsvi.sample("s", dist.Categorical(TRANS[s]))
        jsvi.sample("y", dist.Normal(loc * s, 1.0), obs=y)
        return s, None

    with jsvi.plate("sequences", ys.shape[0]):
        jsvi.scan(step, jnp.zeros(ys.shape[0], jnp.int32), ys.T)
    jsvi.sample("w", dist.Normal(loc, 2.0), obs=1.0)


def forward_log_lik(ys, loc):
    """The forward algorithm in float64: log p(y_0 .. y_{T-1}) per sequence."""
    from scipy.special import logsumexp  # noqa: PLC0415

    ys = np.asarray(ys, np.float64)
    log_trans = np.log(np.asarray(TRANS, np.float64))
    means = loc * np.arange(log_trans.shape[0])
    log_obs = np.log(_npdf(ys[..., None], means))  # (N, T, K)
    alpha = log_trans[0] + log_obs[:, 0]
    for t in range(1, ys.shape[1]):
        alpha = logsumexp(alpha[:, :, None] + log_trans, axis=1) + log_obs[:, t]
    return logsumexp(alpha, axis=-1)


def test_scan_chain_gives_each_sequences_log_likelihood():
    ll = jsvi.log_likelihood(scan_hmm, {"loc": LOCS}, YS)
    assert set(ll) == {"y", "w"}
    assert ll["y"].shape == (3, YS.shape[0])
    for i, loc in enumerate(np.asarray(LOCS, np.float64)):
        np.testing.assert_allclose(ll["y"][i], forward_log_lik(YS, loc), rtol=RTOL)
        np.testing.assert_allclose(
            ll["w"][i], np.log(_npdf((1.0 - loc) / 2.0, 0.0) / 2.0), rtol=RTOL
        )


def test_loo_runs_on_a_scan_chain():
    az = pytest.importorskip("arviz")
    ys = 2.0 * (jax.random.uniform(jax.random.key(2), (12, 5)) < 0.5)
    ys = ys + jax.random.normal(jax.random.key(3), ys.shape)
    locs = 2.0 + 0.2 * jax.random.normal(jax.random.key(4), (200,))
    ll = jsvi.log_likelihood(scan_hmm, {"loc": locs}, ys)
    idata = jsvi.to_arviz(
        {"loc": locs}, log_likelihood={"y": ll["y"]}, observed_data={"y": np.asarray(ys)}
    )
    assert idata.log_likelihood["y"].shape == (1, 200, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ArviZ's single-chain notes
        loo = az.loo(idata, pointwise=True)
    assert np.isfinite(loo.elpd_loo)
    assert loo.loo_i.shape == (12,)  # one point per sequence


def test_a_latent_site_inside_an_enumerated_scan_is_an_error():
    @jsvi.config_enumerate
    def model(ys):
        def step(s, y):
            s = jsvi.sample("s", dist.Categorical(TRANS[s]))
            x = jsvi.sample("x", dist.Normal(2.0 * s, 1.0))
            jsvi.sample("y", dist.Normal(x, 1.0), obs=y)
            return s, None

        jsvi.scan(step, 0, ys)

    with pytest.raises(SiteError, match="sample site 'x': latent, inside a jsvi.scan"):
        jsvi.log_likelihood(model, {"x": jnp.zeros((2, 4))}, jnp.zeros(4))
