"""What a caller hands over after ``svi_init`` is checked: later batches, states,
checkpoints and shapes. Each case was a silent wrong result or an error that named
no culprit; each now raises (or warns) naming the site, param, plate or file."""

from __future__ import annotations

import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.errors import (
    ArgumentError,
    CheckpointError,
    NonFiniteError,
    PlateBroadcastWarning,
    ShapeError,
    StateError,
    SupportError,
)

X = jnp.linspace(-1.0, 1.0, 8)
Y = (X > 0).astype(jnp.float32)


def logit_model(x, y):
    w = jsvi.sample("w", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("y", dist.Bernoulli(logits=w * x), obs=y)


def logit_guide(x, y):
    del x, y
    m = jsvi.param("m", 0.0)
    s = jsvi.param("s", 1.0, constraint=constraints.positive)
    jsvi.sample("w", dist.Normal(m, s))


def logit_svi(opt=None) -> jsvi.SVI:
    return jsvi.SVI(logit_model, logit_guide, opt or optax.adam(0.1), jsvi.Trace_ELBO())


# --- later data ---------------------------------------------------------------------


@pytest.mark.parametrize("label", [0.5, 7.0])
def test_svi_update_rejects_a_batch_outside_the_support(label):
    svi = logit_svi()
    state = jsvi.svi_init(svi, 0, X, Y)
    new, loss = jsvi.svi_update(svi, state, X, Y.at[3].set(label))
    assert np.isnan(float(loss))
    assert int(new.num_rejected) == 1 and int(new.step) == 0
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, b)
    assert np.isnan(float(jsvi.evaluate_loss(svi, state, X, Y.at[3].set(label))))


def test_svi_run_names_the_site_and_the_batch_with_invalid_data():
    svi = logit_svi()
    batches = [((X, Y), {}), ((X, Y), {}), ((X, Y.at[0].set(0.5)), {}), ((X, Y), {})]
    with pytest.raises(SupportError, match="observed site 'y'.*batch #2"):
        jsvi.svi_run(svi, 0, 4, batches=batches, progress_bar=False)
    state = jsvi.svi_init(svi, 0, X, Y)
    with pytest.raises(SupportError, match="observed site 'y'"):
        jsvi.svi_run(svi, 0, 3, X, Y.at[0].set(7.0), init_state=state, progress_bar=False)


def test_validate_false_turns_the_data_check_off():
    svi = jsvi.SVI(logit_model, logit_guide, optax.adam(0.1), jsvi.Trace_ELBO(), validate=False)
    state = jsvi.svi_init(svi, 0, X, Y)
    _, loss = jsvi.svi_update(svi, state, X, Y.at[0].set(0.5))
    assert np.isfinite(float(loss))


def test_data_of_another_size_is_refused_naming_the_param():
    def model(x):
        loc = jsvi.param("loc", jnp.zeros(x.shape[0]))
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", dist.Normal(loc, 1.0), obs=x)

    svi = jsvi.SVI(model, lambda x: None, optax.adam(0.1), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, 0, jnp.ones(5))
    with pytest.raises(ShapeError, match="param 'loc'.*\\(5,\\).*\\(4,\\)"):
        jsvi.svi_update(svi, state, jnp.ones(4))
    with pytest.raises(ShapeError, match="param 'loc'"):
        jsvi.evaluate_loss(svi, state, jnp.ones(4))


def test_a_last_batch_of_size_one_in_a_fixed_plate_warns():
    def model(y):
        p = jsvi.param("p", 0.5, constraint=constraints.unit_interval)
        with jsvi.plate("data", 4):
            jsvi.sample("y", dist.Bernoulli(p), obs=y)

    svi = jsvi.SVI(model, lambda y: None, optax.adam(0.1), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, 0, jnp.array([1.0, 0.0, 1.0, 1.0]))
    with pytest.warns(PlateBroadcastWarning, match="site 'y'.*plate 'data'"):
        jsvi.svi_update(svi, state, jnp.array([1.0]))
    with pytest.warns(PlateBroadcastWarning, match="site 'y'"):
        jsvi.validate(model, lambda y: None, jnp.array(1.0))


# --- states ---------------------------------------------------------------------------


def test_a_state_of_another_svi_is_refused_naming_the_params():
    def other(x, y):
        del y
        jsvi.sample("x", dist.Normal(jsvi.param("mu", 0.0), 1.0), obs=x[0])

    svi = logit_svi()
    foreign = jsvi.svi_init(jsvi.SVI(other, lambda x, y: None, optax.adam(0.1),
                                     jsvi.Trace_ELBO()), 0, X, Y)
    with pytest.raises(StateError, match="missing: \\['m', 's'\\].*\\['mu'\\]"):
        jsvi.svi_update(svi, foreign, X, Y)


def test_a_state_with_another_constraint_is_refused():
    def guide_gt(x, y):
        del x, y
        m = jsvi.param("m", 0.0)
        s = jsvi.param("s", 1.0, constraint=constraints.greater_than(0.5))
        jsvi.sample("w", dist.Normal(m, s))

    svi = logit_svi()
    other = jsvi.SVI(logit_model, guide_gt, optax.adam(0.1), jsvi.Trace_ELBO())
    with pytest.raises(StateError, match="param 's' has constraint greater_than"):
        jsvi.svi_update(svi, jsvi.svi_init(other, 0, X, Y), X, Y)


def test_a_params_dict_or_another_optimizers_state_is_refused():
    svi = logit_svi()
    state = jsvi.svi_init(svi, 0, X, Y)
    with pytest.raises(ArgumentError, match="state must be the SVIState.*params dict"):
        jsvi.svi_update(svi, state.params, X, Y)
    with pytest.raises(StateError, match="opt_state does not match"):
        jsvi.svi_update(logit_svi(optax.sgd(0.1)), state, X, Y)


# --- plates, masks, scales -------------------------------------------------------------


def _masked_model(mask):
    def model(x):
        mu = jsvi.param("mu", 0.0)
        with jsvi.plate("data", x.shape[0]), jsvi.handlers.mask(mask=mask):
            jsvi.sample("x", dist.Normal(mu, 1.0), obs=x)

    return model


@pytest.mark.parametrize("shape", [(4, 1), (3,)])
def test_a_mask_that_widens_or_misfits_the_site_is_an_error(shape):
    model = _masked_model(jnp.ones(shape, bool))
    with pytest.raises(ShapeError, match="site 'x': its mask has shape"):
        jsvi.validate(model, lambda x: None, jnp.zeros(4))


def test_a_scale_that_widens_the_site_is_an_error():
    def model(x):
        mu = jsvi.param("mu", 0.0)
        with jsvi.plate("data", x.shape[0]), jsvi.handlers.scale(factor=jnp.ones((4, 1))):
            jsvi.sample("x", dist.Normal(mu, 1.0), obs=x)

    with pytest.raises(ShapeError, match="site 'x': its scale has shape \\(4, 1\\)"):
        jsvi.validate(model, lambda x: None, jnp.zeros(4))


def test_an_array_bounded_guide_support_outside_the_model_is_refused():
    def model():
        jsvi.sample("rate", dist.Gamma(2.0, 1.0))

    def guide():
        loc = jsvi.param("loc", jnp.zeros(()))
        jsvi.sample("rate", dist.Uniform(loc - 1.0, loc + 1.0))

    with pytest.raises(SupportError, match="guide site 'rate'"):
        jsvi.svi_init(jsvi.SVI(model, guide, optax.adam(0.1), jsvi.Trace_ELBO()), 0)


# --- checkpoints ------------------------------------------------------------------------


def _saved(tmp_path, svi=None):
    svi = svi or logit_svi()
    state = jsvi.svi_init(svi, 0, X, Y)
    path = tmp_path / "state.ckpt"
    jsvi.save_state(path, state)
    return state, path


def test_checkpoints_record_constraints_and_refuse_another(tmp_path):
    state, path = _saved(tmp_path)
    with zipfile.ZipFile(path) as z, z.open("__header__.npy") as f:
        header = json.loads(bytes(np.lib.format.read_array(f)).decode())
    assert header["constraints"]["s"]["repr"] == "positive"

    def guide_gt(x, y):
        del x, y
        m = jsvi.param("m", 0.0)
        s = jsvi.param("s", 1.0, constraint=constraints.greater_than(0.5))
        jsvi.sample("w", dist.Normal(m, s))

    like = jsvi.svi_init(jsvi.SVI(logit_model, guide_gt, optax.adam(0.1), jsvi.Trace_ELBO()), 0, X, Y)
    with pytest.raises(CheckpointError, match="param 's' has constraint positive"):
        jsvi.load_state(path, like=like)
    np.testing.assert_array_equal(jsvi.load_state(path, like=state).params["m"], state.params["m"])


def _rewrite(path, member_bytes):
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members.update(member_bytes)
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)


def _npy(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array))
    return buf.getvalue()


def test_an_array_that_disagrees_with_its_header_is_refused(tmp_path):
    state, path = _saved(tmp_path)
    _rewrite(path, {"leaf_0.npy": _npy(np.zeros((1000, 1000), np.float32))})
    with pytest.raises(CheckpointError, match="leaf .* holds .* bytes"):
        jsvi.load_state(path, like=state)
    _rewrite(path, {"leaf_0.npy": _npy(np.zeros((2,), np.float32))})
    with pytest.raises(CheckpointError, match="stored as \\(2,\\)"):
        jsvi.load_state(path, like=state)


def test_every_corruption_is_a_checkpoint_error(tmp_path):
    state, path = _saved(tmp_path)
    good = path.read_bytes()
    # bit flips across the zip's central directory (its last bytes)
    for start in range(len(good) - 300, len(good), 23):
        bad = bytearray(good)
        bad[start] ^= 0xFF
        path.write_bytes(bytes(bad))
        try:
            jsvi.load_state(path, like=state)
        except CheckpointError:
            pass  # refused, or the flip was harmless (then it loads)
    # a deeply nested header
    nested = "[" * 100_000 + "]" * 100_000
    path.write_bytes(good)
    _rewrite(path, {"__header__.npy": _npy(np.frombuffer(nested.encode(), np.uint8))})
    with pytest.raises(CheckpointError):
        jsvi.load_state(path, like=state)


def test_svi_run_checks_the_checkpoint_folder_before_the_first_step(tmp_path):
    svi = logit_svi()
    with pytest.raises(CheckpointError, match="does not exist"):
        jsvi.svi_run(svi, 0, 5, X, Y, progress_bar=False, checkpoint_every=2,
                     checkpoint_path=tmp_path / "missing" / "run.ckpt")
    with pytest.raises(CheckpointError, match="is a folder"):
        jsvi.svi_run(svi, 0, 5, X, Y, progress_bar=False, checkpoint_every=2,
                     checkpoint_path=tmp_path)


def test_svi_run_refuses_a_folder_it_cannot_write_before_the_first_step(tmp_path, monkeypatch):
    # A read-only folder, as a user without write permission sees it (the tests
    # may run as root, who can write anywhere: the refusal is simulated).
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    svi = logit_svi()
    with pytest.raises(CheckpointError, match="cannot write in .*Permission denied"):
        jsvi.svi_run(svi, 0, 5, X, Y, progress_bar=False, checkpoint_every=2,
                     checkpoint_path=tmp_path / "run.ckpt")
    assert not (tmp_path / "run.ckpt").exists()


def test_a_nonfinite_state_never_overwrites_a_good_checkpoint(tmp_path):
    def model(x):
        mu = jsvi.param("mu", 0.0)
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", dist.Normal(mu, 1.0), obs=x)

    svi = jsvi.SVI(model, lambda x: None, optax.sgd(0.1), jsvi.Trace_ELBO())
    path = tmp_path / "run.ckpt"
    good = jnp.ones(3)
    state, _ = jsvi.svi_run(svi, 0, 4, good, progress_bar=False, checkpoint_every=2,
                            checkpoint_path=path)
    before = path.read_bytes()
    diverging = jsvi.SVI(model, lambda x: None, optax.sgd(1e38), jsvi.Trace_ELBO())
    with pytest.raises(NonFiniteError, match="params \\['mu'\\].*not overwritten"):
        jsvi.svi_run(diverging, 0, 8, good, progress_bar=False, checkpoint_every=2,
                     checkpoint_path=path, skip_nonfinite=False, init_state=state)
    assert path.read_bytes() == before
    assert os.path.exists(path)


def test_sites_named_by_traced_subsample_indices_get_a_how_to():
    def model(x):
        mu = jsvi.param("mu", 0.0)
        for i in jsvi.plate("points", x.shape[0], subsample_size=2):
            jsvi.sample(f"x_{i}", dist.Normal(mu, 1.0), obs=x[i])

    svi = jsvi.SVI(model, lambda x: None, optax.adam(0.1), jsvi.Trace_ELBO())
    with pytest.raises(jsvi.errors.SiteError, match="plate \\('points'\\).*enumerate"):
        jsvi.svi_init(svi, 0, jnp.arange(6.0))


def test_stick_the_landing_refuses_a_flow_guide():
    from jsvi.autoguide import AutoIAFNormal

    def model():
        x = jsvi.sample("x", dist.Normal(0.0, 1.0))
        jsvi.sample("y", dist.Normal(x, 1.0), obs=0.5)

    loss = jsvi.Trace_ELBO(stick_the_landing=True)
    svi = jsvi.SVI(model, AutoIAFNormal(model), optax.adam(1e-2), loss)
    with pytest.raises(jsvi.errors.SiteError, match="guide site 'x'.*stick_the_landing"):
        jsvi.svi_init(svi, 0)


def test_a_plate_created_without_with_is_an_error():
    def model(x):
        mu = jsvi.param("mu", 0.0)
        jsvi.plate("data", x.shape[0])  # forgot `with`
        jsvi.sample("x", dist.Normal(mu, 1.0).expand((x.shape[0],)).to_event(1), obs=x)

    with pytest.raises(jsvi.errors.SiteError, match="plate 'data': created in the model but never used"):
        jsvi.validate(model, lambda x: None, jnp.zeros(3))
