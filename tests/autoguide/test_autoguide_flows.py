"""AutoIAFNormal and AutoBNAFNormal: exact log-determinants, exact guide density
(zero-variance ELBO on a Gaussian target they can represent), and a higher final
ELBO than AutoNormal on a banana-shaped posterior."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi.autoguide import AutoBNAFNormal, AutoIAFNormal, AutoNormal
from jsvi.autoguide.flows import (
    BlockNeuralAutoregressiveTransform,
    InverseAutoregressiveTransform,
    _bnaf_masks,
    _init_bnaf,
    _init_made,
    _made_masks,
)


def test_flows_are_triangular_and_their_log_det_is_exact():
    dim = 3
    x = jax.random.normal(jax.random.key(3), (dim,))
    made = _init_made(jax.random.key(1), dim, (8, 8))
    made = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(2), a.shape),
                        made)
    flows = [InverseAutoregressiveTransform(made, _made_masks(dim, (8, 8))),
             BlockNeuralAutoregressiveTransform(_init_bnaf(jax.random.key(4), dim, (4, 3)),
                                                _bnaf_masks(dim, (4, 3)), dim)]

    @jax.jit
    def jac_and_log_det(x):
        return [(jax.jacfwd(f)(x), f.log_abs_det_jacobian(x, None)) for f in flows]

    for jac, log_det in jac_and_log_det(x):
        jac = np.asarray(jac)
        np.testing.assert_allclose(jac, np.tril(jac), atol=1e-6)  # autoregressive
        assert np.all(np.diag(jac) > 0)
        np.testing.assert_allclose(log_det, np.linalg.slogdet(jac)[1], rtol=1e-5, atol=1e-5)


def banana():
    a = jsvi.sample("a", dist.Normal(0.0, 1.0))
    jsvi.sample("b", dist.Normal(a**2, 0.4))


def _fit(guide, num_steps, key):
    # A decaying step size: the fits are compared where they settled, not at a
    # point of Adam's noisy walk at a constant rate.
    opt = optax.adam(optax.cosine_decay_schedule(0.01, num_steps))
    svi = jsvi.SVI(banana, guide, opt, jsvi.Trace_ELBO(num_particles=2))
    state, _ = jsvi.svi_run(svi, key, num_steps, progress_bar=False)
    params = jsvi.get_params(svi, state)
    one = lambda k: -jsvi.Trace_ELBO().loss(k, params, banana, guide)  # noqa: E731
    draws = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(9), 2000))
    return np.asarray(draws)


@pytest.mark.slow
def test_flow_guides_beat_autonormal_on_a_banana():
    """The target is normalized (log p = 0), so -ELBO is KL(q || p). Final ELBOs
    from 2,000 draws each: each flow above AutoNormal's by more than 4 standard
    errors of the difference."""
    key = jax.random.key(0)
    base = _fit(AutoNormal(banana), 1000, key)
    for guide in (AutoIAFNormal(banana, num_flows=2), AutoBNAFNormal(banana)):
        flow = _fit(guide, 1000, key)
        se = np.hypot(flow.std(ddof=1), base.std(ddof=1)) / np.sqrt(2000)
        assert flow.mean() - base.mean() > 4 * se, (type(guide).__name__, flow.mean(),
                                                   base.mean(), se)
        assert flow.mean() <= 4 * flow.std(ddof=1) / np.sqrt(2000)  # a lower bound on 0


def test_dreg_refuses_a_flow_guide_by_site_name():
    from jsvi.errors import SiteError

    guide = AutoIAFNormal(banana)
    svi = jsvi.SVI(banana, guide, optax.adam(0.01),
                   jsvi.RenyiELBO(doubly_reparameterized=True))
    with pytest.raises(SiteError, match="guide site 'a'.*flow"):
        jsvi.svi_init(svi, jax.random.key(0))
