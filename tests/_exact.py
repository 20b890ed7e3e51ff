"""Helpers for tests that compare an enumerated loss with an exact one (brute
force over paths, or a hand-written forward algorithm). ``tests/`` is on
``sys.path`` once its ``conftest.py`` is loaded: ``from _exact import ...``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jsvi

RTOL, GRAD_RTOL = 1e-5, 1e-4  # float32 sums; gradients through T steps


def empty_guide(*args, **kwargs):
    del args, kwargs


def enum_value_and_grad(model, params, *args):
    """``(log-likelihood, its gradient)`` by ``TraceEnum_ELBO`` with an empty guide
    (the ELBO is then the log-likelihood with every enumerated site summed out)."""
    est = jsvi.TraceEnum_ELBO()
    return jax.jit(
        jax.value_and_grad(
            lambda q: -est.loss(jax.random.key(0), q, model, empty_guide, *args)
        )
    )(params)


def assert_value_and_grad_close(got, want):
    """Values within ``RTOL``; each gradient within ``GRAD_RTOL`` of its largest
    entry (at least 1)."""
    (value, grad), (want_value, want_grad) = got, want
    np.testing.assert_allclose(value, want_value, rtol=RTOL)
    for name in want_grad:
        scale = float(jnp.max(jnp.abs(want_grad[name])))
        np.testing.assert_allclose(
            grad[name],
            want_grad[name],
            rtol=GRAD_RTOL,
            atol=GRAD_RTOL * max(scale, 1.0),
            err_msg=name,
        )


def compare_with_exact(model, exact, params, *args):
    """``model``'s enumerated log-likelihood and gradient equal ``exact(params)``'s."""
    assert_value_and_grad_close(
        enum_value_and_grad(model, params, *args),
        jax.jit(jax.value_and_grad(exact))(params),
    )


def viterbi_path(log_init, log_trans, log_obs):
    """The most probable state path of one chain, by dynamic programming in
    float64: ``log_init`` (K,), ``log_trans`` (K, K), ``log_obs`` (T, K)."""
    log_trans = np.asarray(log_trans, np.float64)
    score, back = np.asarray(log_init, np.float64) + log_obs[0], []
    for t in range(1, log_obs.shape[0]):
        cand = score[:, None] + log_trans
        back.append(np.argmax(cand, 0))
        score = np.max(cand, 0) + log_obs[t]
    path = [int(np.argmax(score))]
    for b in reversed(back):
        path.append(int(b[path[-1]]))
    return np.array(path[::-1])
