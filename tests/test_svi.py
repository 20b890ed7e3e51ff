"""The functional SVI loop: svi_init / svi_update / svi_run / get_params."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.errors import ArgumentError, ModelGuideMismatchError, SupportError

# --- Pyro's SVI Part I coin -------------------------------------------------------

COIN_DATA = jnp.array([1.0] * 6 + [0.0] * 4)


def coin_model(data):
    f = jsvi.sample("latent_fairness", dist.Beta(10.0, 10.0))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("obs", dist.Bernoulli(f), obs=data)


def coin_guide(data):
    del data
    alpha_q = jsvi.param("alpha_q", 15.0, constraint=constraints.positive)
    beta_q = jsvi.param("beta_q", 15.0, constraint=constraints.positive)
    jsvi.sample("latent_fairness", dist.Beta(alpha_q, beta_q))


def coin_svi(lr=0.01, num_particles=1):
    return jsvi.SVI(
        coin_model, coin_guide, optax.adam(lr), jsvi.Trace_ELBO(num_particles=num_particles)
    )


@pytest.mark.slow
def test_coin_posterior_matches_exact_beta_16_14():
    # Exact posterior Beta(16, 14): mean 0.5333, sd 0.0896. The guide family contains
    # it, so the optimum is exact; what remains is optimizer noise. We run Adam with
    # a decaying step size and compare in units of the posterior sd: mean within
    # 0.1 sd, sd within 10%.
    steps = 4000
    schedule = optax.exponential_decay(0.02, transition_steps=steps, decay_rate=0.02)
    svi = jsvi.SVI(coin_model, coin_guide, optax.adam(schedule), jsvi.Trace_ELBO(num_particles=8))
    state, losses = jsvi.svi_run(svi, jax.random.key(0), steps, COIN_DATA, progress_bar=False)
    p = jsvi.get_params(svi, state)
    a, b = float(p["alpha_q"]), float(p["beta_q"])
    mean = a / (a + b)
    sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    exact_mean, exact_sd = 16 / 30, np.sqrt(16 * 14 / (30**2 * 31))
    assert abs(mean - exact_mean) < 0.1 * exact_sd
    assert abs(np.log(sd / exact_sd)) < 0.1
    assert np.all(np.isfinite(losses))


def test_svi_run_reproduces_svi_update_step_for_step():
    svi = coin_svi()
    state = jsvi.svi_init(svi, jax.random.key(1), COIN_DATA)
    losses = []
    for _ in range(30):
        state, loss = jsvi.svi_update(svi, state, COIN_DATA)
        losses.append(loss)
    run_state, run_losses = jsvi.svi_run(svi, jax.random.key(1), 30, COIN_DATA, progress_bar=False)
    np.testing.assert_allclose(run_losses, np.array(losses), rtol=1e-5)
    for k in state.params:
        np.testing.assert_allclose(run_state.params[k], state.params[k], rtol=1e-5)
    assert int(run_state.step) == 30
    # chunked with a progress bar: same numbers
    bar_state, bar_losses = jsvi.svi_run(svi, jax.random.key(1), 30, COIN_DATA, progress_bar=True)
    np.testing.assert_allclose(bar_losses, run_losses, rtol=1e-5)


def test_svi_run_resumes_from_init_state():
    svi = coin_svi()
    full_state, full_losses = jsvi.svi_run(svi, 0, 20, COIN_DATA, progress_bar=False)
    half, l1 = jsvi.svi_run(svi, 0, 10, COIN_DATA, progress_bar=False)
    rest, l2 = jsvi.svi_run(svi, None, 10, COIN_DATA, progress_bar=False, init_state=half)
    np.testing.assert_allclose(np.concatenate([l1, l2]), full_losses, rtol=1e-5)
    np.testing.assert_allclose(rest.params["alpha_q"], full_state.params["alpha_q"], rtol=1e-5)


def test_same_key_same_inputs_bit_identical():
    svi = coin_svi()
    s1, l1 = jsvi.svi_run(svi, 3, 25, COIN_DATA, progress_bar=False)
    s2, l2 = jsvi.svi_run(svi, 3, 25, COIN_DATA, progress_bar=False)
    np.testing.assert_array_equal(l1, l2)
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
        np.testing.assert_array_equal(jax.random.key_data(a) if a.dtype == s1.rng_key.dtype else a,
                                      jax.random.key_data(b) if b.dtype == s1.rng_key.dtype else b)


def test_jit_scan_and_vmap_agree_with_unjitted():
    svi = coin_svi()
    state0 = jsvi.svi_init(svi, jax.random.key(2), COIN_DATA)
    with jax.disable_jit():
        eager_state, eager_loss = jsvi.svi_update(svi, state0, COIN_DATA)
    jitted = jax.jit(jsvi.svi_update, static_argnums=0)
    j_state, j_loss = jitted(svi, state0, COIN_DATA)
    np.testing.assert_allclose(j_loss, eager_loss, rtol=1e-5)
    np.testing.assert_allclose(j_state.params["alpha_q"], eager_state.params["alpha_q"], rtol=1e-5)

    def body(st, _):
        return jsvi.svi_update(svi, st, COIN_DATA)

    scan_state, scan_losses = jax.lax.scan(body, state0, None, length=5)
    st, losses = state0, []
    for _ in range(5):
        st, loss = jsvi.svi_update(svi, st, COIN_DATA)
        losses.append(loss)
    np.testing.assert_allclose(scan_losses, np.array(losses), rtol=1e-5)
    np.testing.assert_allclose(scan_state.params["beta_q"], st.params["beta_q"], rtol=1e-5)

    keys = jax.random.split(jax.random.key(5), 3)
    states = jax.vmap(lambda k: jsvi.svi_init(svi, k, COIN_DATA))(keys)
    v_states, v_losses = jax.vmap(lambda s: jsvi.svi_update(svi, s, COIN_DATA))(states)
    for i, k in enumerate(keys):
        s_i = jsvi.svi_init(svi, k, COIN_DATA)
        s_i, l_i = jsvi.svi_update(svi, s_i, COIN_DATA)
        np.testing.assert_allclose(v_losses[i], l_i, rtol=1e-5)
        np.testing.assert_allclose(v_states.params["alpha_q"][i], s_i.params["alpha_q"], rtol=1e-5)


def test_rejection_count_changes_the_draw_and_nothing_else():
    svi = coin_svi()
    state0 = jsvi.svi_init(svi, jax.random.key(3), COIN_DATA)
    jitted = jax.jit(jsvi.svi_update, static_argnums=0)
    plain_state, plain_loss = jsvi.svi_update(svi, state0, COIN_DATA)
    # the step without rejections takes its own program: it must agree with the
    # general one (which mixes num_rejected into the key) bit for bit
    j_state, j_loss = jitted(svi, state0, COIN_DATA)
    np.testing.assert_array_equal(plain_loss, j_loss)
    np.testing.assert_array_equal(plain_state.params["alpha_q"], j_state.params["alpha_q"])
    assert int(plain_state.num_rejected) == 0 and int(plain_state.step) == 1
    # after rejections the retry draws anew, and the count is kept
    retried = state0._replace(num_rejected=jnp.int32(2))
    r_state, r_loss = jsvi.svi_update(svi, retried, COIN_DATA)
    jr_state, jr_loss = jitted(svi, retried, COIN_DATA)
    assert float(r_loss) != float(plain_loss)
    np.testing.assert_array_equal(r_loss, jr_loss)
    np.testing.assert_array_equal(r_state.params["beta_q"], jr_state.params["beta_q"])
    assert int(r_state.num_rejected) == 2 and int(r_state.step) == 1
    # a zero count restored from elsewhere (not the state's own array) is zero
    restored = state0._replace(num_rejected=jnp.asarray(np.int32(0)))
    z_state, z_loss = jsvi.svi_update(svi, restored, COIN_DATA)
    np.testing.assert_array_equal(z_loss, plain_loss)
    # the key as raw data draws as the typed key does, and stays as it was given
    raw = state0._replace(rng_key=jax.random.key_data(state0.rng_key))
    raw_state, raw_loss = jsvi.svi_update(svi, raw, COIN_DATA)
    np.testing.assert_array_equal(raw_loss, plain_loss)
    np.testing.assert_array_equal(raw_state.rng_key, raw.rng_key)
    assert jax.random.key_data(plain_state.rng_key).tolist() == (
        jax.random.key_data(state0.rng_key).tolist()
    )
    # a second state with its own key: its own draw, and the first one's unchanged
    other = jsvi.svi_init(svi, jax.random.key(4), COIN_DATA)
    _, other_loss = jsvi.svi_update(svi, other, COIN_DATA)
    _, again_loss = jsvi.svi_update(svi, state0, COIN_DATA)
    assert float(other_loss) != float(plain_loss)
    np.testing.assert_array_equal(again_loss, plain_loss)


def test_svi_update_traces_once():
    calls = {"n": 0}

    def model(data):
        calls["n"] += 1
        coin_model(data)

    svi = jsvi.SVI(model, coin_guide, optax.adam(0.01), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, 0, COIN_DATA)
    state, _ = jsvi.svi_update(svi, state, COIN_DATA)
    after_first = calls["n"]
    for _ in range(5):
        state, _ = jsvi.svi_update(svi, state, COIN_DATA)
    assert calls["n"] == after_first
    jsvi.svi_run(svi, 0, 10, COIN_DATA, progress_bar=False)
    after_run = calls["n"]
    jsvi.svi_run(svi, 0, 10, COIN_DATA, progress_bar=False, init_state=state)
    assert calls["n"] == after_run  # resuming reuses the compiled loop


def test_interleaved_states_and_traced_calls_do_not_mix():
    """States with other keys, a jitted call in between, and a call with other
    arguments must each get their own step: nothing is remembered between calls."""
    svi = coin_svi()
    alone = {}
    for seed in (0, 1):
        state = jsvi.svi_init(svi, seed, COIN_DATA)
        losses = []
        for _ in range(4):
            state, loss = jsvi.svi_update(svi, state, COIN_DATA)
            losses.append(float(loss))
        alone[seed] = (losses, jsvi.get_params(svi, state))

    states = {seed: jsvi.svi_init(svi, seed, COIN_DATA) for seed in (0, 1)}
    losses = {0: [], 1: []}
    jitted = jax.jit(jsvi.svi_update, static_argnums=0)
    for t in range(4):
        for seed in (0, 1):
            if (t, seed) == (2, 1):
                states[seed], loss = jitted(svi, states[seed], COIN_DATA)
            elif (t, seed) == (1, 0):  # by keyword: another compiled step, then back
                states[seed], loss = jsvi.svi_update(svi, states[seed], data=COIN_DATA)
            else:
                states[seed], loss = jsvi.svi_update(svi, states[seed], COIN_DATA)
            losses[seed].append(float(loss))
    for seed in (0, 1):
        np.testing.assert_allclose(losses[seed], alone[seed][0], rtol=1e-6)
        for name, value in alone[seed][1].items():
            np.testing.assert_allclose(jsvi.get_params(svi, states[seed])[name], value, rtol=1e-6)


def test_evaluate_loss_equals_the_loss_the_next_update_reports():
    svi = coin_svi()
    state = jsvi.svi_init(svi, 4, COIN_DATA)
    np.testing.assert_allclose(
        jsvi.evaluate_loss(svi, state, COIN_DATA), jsvi.svi_update(svi, state, COIN_DATA)[1], rtol=1e-6
    )
    assert svi.evaluate_loss(state, COIN_DATA) == jsvi.evaluate_loss(svi, state, COIN_DATA)


def test_empty_guide_gives_closed_form_mle():
    x = jax.random.normal(jax.random.key(0), (200,)) * 2.0 + 3.0

    def model(x):
        mu = jsvi.param("mu", 0.0)
        sigma = jsvi.param("sigma", 1.0, constraint=constraints.positive)
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", dist.Normal(mu, sigma), obs=x)

    def guide(x):
        del x

    svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    state, losses = jsvi.svi_run(svi, 0, 2000, x, progress_bar=False)
    p = jsvi.get_params(svi, state)
    mle_mu, mle_sigma = float(x.mean()), float(x.std())
    # The loss is deterministic, so the optimizer reaches the MLE up to its own
    # tolerance; we ask for 1e-3 of the data scale.
    assert abs(float(p["mu"]) - mle_mu) < 1e-3 * mle_sigma
    assert abs(float(p["sigma"]) - mle_sigma) < 1e-3 * mle_sigma
    np.testing.assert_allclose(losses[-1], -dist.Normal(mle_mu, mle_sigma).log_prob(x).sum(), rtol=1e-5)


def test_constrained_and_pytree_params():
    def model():
        w = jsvi.param("net", {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)})
        probs = jsvi.param("probs", jnp.array([0.2, 0.3, 0.5]), constraint=constraints.simplex)
        low = jsvi.param("low", 2.0, constraint=constraints.greater_than(1.0))
        frac = jsvi.param("frac", 0.25, constraint=constraints.interval(0.0, 0.5))
        chol = jsvi.param("L", jnp.eye(2), constraint=constraints.lower_cholesky)
        cov = jsvi.param("cov", 2 * jnp.eye(2), constraint=constraints.positive_definite)
        total = (w["w"].sum() + w["b"].sum() + probs @ jnp.arange(3.0) + low + frac
                 + chol.sum() + cov.sum())
        jsvi.factor("f", -(total**2) / 100)

    svi = jsvi.SVI(model, lambda: None, optax.adam(1e-2), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, 0)
    p0 = jsvi.get_params(svi, state)
    np.testing.assert_allclose(p0["probs"], [0.2, 0.3, 0.5], rtol=1e-5)
    np.testing.assert_allclose(p0["L"], np.eye(2), atol=1e-6)
    np.testing.assert_allclose(p0["cov"], 2 * np.eye(2), rtol=1e-5)
    assert state.params["probs"].shape == (2,)  # stored unconstrained
    state, _ = jsvi.svi_run(svi, 0, 50, progress_bar=False)
    p = jsvi.get_params(svi, state)
    assert set(p["net"]) == {"w", "b"} and p["net"]["w"].shape == (2, 3)
    assert not np.allclose(p["net"]["w"], 1.0)
    np.testing.assert_allclose(p["probs"].sum(), 1.0, rtol=1e-5)
    assert float(p["low"]) > 1.0 and 0.0 < float(p["frac"]) < 0.5
    assert np.all(np.linalg.eigvalsh(np.asarray(p["cov"])) > 0)


def test_per_param_gives_each_param_its_own_optimizer():
    def model():
        a = jsvi.param("a", 0.0)
        b = jsvi.param("b", 0.0)
        jsvi.factor("f", a + b)

    opt = jsvi.per_param(lambda name: optax.sgd(1.0 if name == "a" else 0.1))
    svi = jsvi.SVI(model, lambda: None, opt, jsvi.Trace_ELBO())
    state, _ = jsvi.svi_update(svi, jsvi.svi_init(svi, 0))
    p = jsvi.get_params(svi, state)
    np.testing.assert_allclose([p["a"], p["b"]], [1.0, 0.1], rtol=1e-6)


def test_param_init_outside_constraint_is_reported_at_init():
    def guide(data):
        del data
        jsvi.param("alpha_q", -1.0, constraint=constraints.positive)
        jsvi.sample("latent_fairness", dist.Beta(2.0, 2.0))

    svi = jsvi.SVI(coin_model, guide, optax.adam(0.01), jsvi.Trace_ELBO())
    with pytest.raises(SupportError, match=r"param 'alpha_q': init value lies outside its constraint"):
        jsvi.svi_init(svi, 0, COIN_DATA)


def test_invalid_distribution_arguments_are_reported():
    def model(data):
        f = jsvi.sample("latent_fairness", dist.Beta(10.0, 10.0))
        with jsvi.plate("data", data.shape[0]):
            jsvi.sample("obs", dist.Bernoulli(f), obs=data)

    svi = jsvi.SVI(model, coin_guide, optax.adam(0.01), jsvi.Trace_ELBO())
    with pytest.raises(SupportError, match=r"sample site 'obs': value"):
        jsvi.svi_init(svi, 0, jnp.array([0.0, 2.0]))  # 2 is outside Bernoulli's support

    def bad_scale():
        jsvi.sample("x", dist.Normal(0.0, -1.0), obs=0.0)

    with pytest.raises(ValueError, match="scale"):
        jsvi.svi_init(jsvi.SVI(bad_scale, lambda: None, optax.sgd(0.1), jsvi.Trace_ELBO()), 0)


def test_model_and_guide_with_different_signatures():
    def guide(data, extra):
        del data, extra

    with pytest.raises(ModelGuideMismatchError, match=r"model takes \(data\) but guide takes \(data, extra\)"):
        jsvi.SVI(coin_model, guide, optax.adam(0.01), jsvi.Trace_ELBO())


def test_svi_configuration_errors():
    with pytest.raises(ArgumentError, match="optimizer must be an optax"):
        jsvi.SVI(coin_model, coin_guide, "adam", jsvi.Trace_ELBO())
    with pytest.raises(ArgumentError, match="loss must be an ELBO"):
        jsvi.SVI(coin_model, coin_guide, optax.adam(0.1), None)
    svi = coin_svi()
    with pytest.raises(ArgumentError, match="num_steps must be an int"):
        jsvi.svi_run(svi, 0, 0, COIN_DATA)
    with pytest.raises(ArgumentError, match="both checkpoint_every and checkpoint_path"):
        jsvi.svi_run(svi, 0, 5, COIN_DATA, checkpoint_every=2)


def test_static_python_arguments_and_methods():
    def model(data, n):
        assert isinstance(n, int)  # static: usable for shapes
        coin_model(data[:n])

    def guide(data, n):
        del n
        coin_guide(data)

    svi = jsvi.SVI(model, guide, optax.adam(0.01), jsvi.Trace_ELBO())
    state = svi.init(0, COIN_DATA, 5)
    state, loss = svi.update(state, COIN_DATA, n=5)
    assert np.isfinite(float(loss))
    assert set(svi.get_params(state)) == {"alpha_q", "beta_q"}
    # by position, by keyword, and with a different static value: each its own
    # program, the first two the same step
    by_position, loss_p = svi.update(state, COIN_DATA, 5)
    by_keyword, loss_k = svi.update(state, COIN_DATA, n=5)
    np.testing.assert_array_equal(loss_p, loss_k)
    np.testing.assert_array_equal(by_position.params["alpha_q"], by_keyword.params["alpha_q"])
    _, loss_3 = svi.update(state, COIN_DATA, 3)
    assert float(loss_3) != float(loss_p)
    seen = []

    def typed_model(data, n):
        seen.append(type(n))
        coin_model(data[:n])

    typed = jsvi.SVI(typed_model, guide, optax.adam(0.01), jsvi.Trace_ELBO())
    typed_state = typed.init(0, COIN_DATA, 1)
    typed.update(typed_state, COIN_DATA, 1)
    before = len(seen)
    assert seen[-1] is int
    typed.update(typed_state, COIN_DATA, True)  # 1 and True are different programs
    assert len(seen) > before and set(seen[before:]) == {bool}
    assert list(inspect.signature(jsvi.svi_run).parameters)[:4] == ["svi", "rng_key", "num_steps", "args"]


def test_nonfinite_steps_are_rejected_and_then_reported():
    def model():
        s = jsvi.param("s", 1.0)
        jsvi.factor("f", jnp.log(s) - 10.0 * s)  # the first step overshoots to s < 0

    svi = jsvi.SVI(model, lambda: None, optax.sgd(5.0), jsvi.Trace_ELBO())
    with pytest.raises(jsvi.errors.NonFiniteError, match=r"3 consecutive.*model site 'f'"):
        jsvi.svi_run(svi, 0, 50, progress_bar=False, max_nonfinite=3)

    def ok_model():
        s = jsvi.param("s", 1.0)
        jsvi.factor("f", jnp.where(s > 0, jnp.log(jnp.abs(s)), jnp.nan))

    svi = jsvi.SVI(ok_model, lambda: None, optax.sgd(0.1), jsvi.Trace_ELBO())
    state, losses = jsvi.svi_run(svi, 0, 5, progress_bar=False)
    assert int(state.num_rejected) == 0 and np.all(np.isfinite(losses))


def test_svi_init_and_update_inside_an_outer_jit():
    def model(x):
        mu = jsvi.param("mu", 0.0)
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", dist.Normal(mu, 1.0), obs=x)

    svi = jsvi.SVI(model, lambda x: None, optax.adam(0.1), jsvi.Trace_ELBO())
    x = jnp.array([0.5, 1.5])

    @jax.jit
    def fit(x):
        state = jsvi.svi_init(svi, 0, x)
        return jax.lax.scan(lambda s, _: jsvi.svi_update(svi, s, x), state, None, length=3)

    state, losses = fit(x)
    ref = jsvi.svi_init(svi, 0, x)
    for _ in range(3):
        ref, _ = jsvi.svi_update(svi, ref, x)
    np.testing.assert_allclose(state.params["mu"], ref.params["mu"], rtol=1e-6)
    assert losses.shape == (3,)
