"""A catalogue of malformed programs: each raises one typed error, naming the site.

Every case runs twice, through ``jsvi.validate`` and through ``svi_init`` (which
applies the same checks before compiling), and must raise the same error class with
a message that names the offending site (or plate, param or function) and says what
to change. A few cases that are not model/guide pairs (primitives called outside
any handler, bad handler arguments) are at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints, handlers
from jsvi.errors import (
    ArgumentError,
    JsviError,
    MissingRNGKeyError,
    ModelGuideMismatchError,
    NonFiniteError,
    ShapeError,
    SiteError,
    SupportError,
)

X3 = jnp.array([0.5, -1.0, 2.0])
COIN = jnp.array([1.0, 0.0, 1.0, 1.0])
COUNTS = jnp.array([0, 3, 1], jnp.int32)


class Case(NamedTuple):
    model: Callable[..., Any]
    guide: Callable[..., Any]
    args: tuple
    error: type[JsviError]
    match: str  # a regex; always names the site (or plate/param) at fault
    loss: Any = None


def empty_guide(*args, **kwargs):
    del args, kwargs


def normal_guide(name="z", shape=()):
    def guide(x):
        del x
        m = jsvi.param(f"m_{name}", jnp.zeros(shape))
        jsvi.sample(name, dist.Normal(m, 1.0).to_event(len(shape)))

    return guide


def mu_model(x):
    z = jsvi.sample("z", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


CASES: dict[str, Case] = {}


def case(name: str, *args: Any, **kwargs: Any) -> None:
    assert name not in CASES
    CASES[name] = Case(*args, **kwargs)


# --- model/guide mismatch ----------------------------------------------------------
case("guide_missing_latent", mu_model, empty_guide, (X3,), ModelGuideMismatchError,
     "model site 'z': latent in the model but missing from the guide")


def _extra_guide(x):
    normal_guide()(x)
    jsvi.sample("w", dist.Normal(0.0, 1.0))


case("guide_extra_site", mu_model, _extra_guide, (X3,), ModelGuideMismatchError,
     "guide site 'w': sampled in the guide but not in the model")


def _obs_guide(x):
    normal_guide()(x)
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x)


case("guide_has_obs", mu_model, _obs_guide, (X3,), SiteError, "guide site 'x': has obs")


def _guide_samples_observed(x):
    normal_guide()(x)
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(0.0, 1.0))


case("guide_samples_observed_site", mu_model, _guide_samples_observed, (X3,),
     ModelGuideMismatchError, "guide site 'x': the model observes this site")


def _shape_guide(x):
    del x
    jsvi.sample("z", dist.Normal(jnp.zeros(2), 1.0).to_event(1))


case("guide_value_shape_differs", mu_model, _shape_guide, (X3,), ShapeError,
     "sample site 'z': the guide draws values of shape \\(2,\\)")


def _other_signature(x, y):
    del x, y


case("signatures_differ", mu_model, _other_signature, (X3,), ModelGuideMismatchError,
     "model takes \\(x\\) but guide takes \\(x, y\\)")


# --- names ---------------------------------------------------------------------------
def _dup_model(x):
    mu_model(x)
    jsvi.sample("z", dist.Normal(0.0, 1.0))


case("duplicate_sample_name", _dup_model, normal_guide(), (X3,), SiteError,
     "sample site 'z': the name is already used")


def _param_sample_clash_guide(x):
    del x
    z = jsvi.param("z", 0.0)
    jsvi.sample("z", dist.Normal(z, 1.0))


case("param_and_sample_share_a_name", mu_model, _param_sample_clash_guide, (X3,),
     SiteError, "site 'z': the name is already used")


def _plate_sample_clash(x):
    z = jsvi.sample("data", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


case("plate_and_sample_share_a_name", _plate_sample_clash, normal_guide("data"), (X3,),
     SiteError, "site 'data': the replayed trace has a sample site of that name")


def _reserved_name_model(x):
    mu_model(x)
    jsvi.deterministic("_jsvi/mine", x)


case("reserved_prefix", _reserved_name_model, normal_guide(), (X3,), ArgumentError,
     "deterministic site '_jsvi/mine': names starting with '_jsvi/' are reserved")


# --- plates ------------------------------------------------------------------------
def _plate_dim_conflict(x):
    with jsvi.plate("a", 3, dim=-1), jsvi.plate("b", 3, dim=-1):
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x)


case("two_plates_one_dim", _plate_dim_conflict, empty_guide, (X3,), ShapeError,
     "plate 'b'")


def _plate_size_model(x):
    z = jsvi.sample("z", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", 3):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


def _plate_size_guide(x):
    del x
    with jsvi.plate("data", 4):
        jsvi.sample("z", dist.Normal(0.0, 1.0))


case("plate_sizes_differ_model_guide", _plate_size_model, _plate_size_guide, (X3,),
     ShapeError, "sample site 'z': the guide draws values of shape \\(4,\\)")


def _plate_twice_model(x):
    with jsvi.plate("data", 3):
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x)
    with jsvi.plate("data", 2):
        jsvi.sample("y", dist.Normal(0.0, 1.0), obs=x[:2])


case("plate_reentered_with_other_size", _plate_twice_model, empty_guide, (X3,),
     ShapeError, "plate 'data': entered with \\(size, subsample_size\\) \\(2, 2\\)")


def _plate_dims_differ_model(x):
    with jsvi.plate("data", 3, dim=-1):
        jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x)


def _plate_dims_differ_guide(x):
    del x
    with jsvi.plate("data", 3, dim=-2):
        jsvi.sample("z", dist.Normal(0.0, 1.0))


case("plate_dims_differ_model_guide", _plate_dims_differ_model, _plate_dims_differ_guide,
     (X3,), JsviError, "'z'|plate 'data'")


def _batch_vs_plate(x):
    with jsvi.plate("data", 3):
        jsvi.sample("x", dist.Normal(jnp.zeros(4), 1.0), obs=jnp.zeros(4))


case("batch_shape_does_not_fit_plate", _batch_vs_plate, empty_guide, (X3,), ShapeError,
     "sample site 'x': batch_shape \\(4,\\) has size 4 at dim -1, but plate 'data'")


def _obs_vs_plate(x):
    del x
    with jsvi.plate("data", 3):
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=jnp.zeros(5))


case("obs_does_not_fit_plate", _obs_vs_plate, empty_guide, (X3,), ShapeError,
     "sample site 'x': obs has shape \\(5,\\)")


def _obs_column(x):
    with jsvi.plate("data", 3):
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x[:, None])


case("obs_column_vector_in_plate", _obs_column, empty_guide, (X3,), ShapeError,
     "sample site 'x'")


def _no_plate_batch(x):
    del x
    jsvi.sample("w", dist.Normal(jnp.zeros(3), 1.0))


case("missing_to_event", _no_plate_batch, normal_guide("w", (3,)), (X3,), ShapeError,
     "site 'w': batch_shape \\(3,\\) has size 3 at dim -1, but no plate")


def _excess_event_model(x):
    with jsvi.plate("data", 3):
        jsvi.sample("x", dist.Normal(jnp.zeros(3), 1.0).to_event(1), obs=x)


case("excess_to_event", _excess_event_model, empty_guide, (X3,), ShapeError,
     "site 'x': obs has shape \\(3,\\), which has no dim for plate 'data'")


def _event_obs_shape(x):
    del x
    jsvi.sample("x", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)),
                obs=jnp.zeros(3))


case("obs_lacks_event_shape", _event_obs_shape, empty_guide, (X3,), ShapeError,
     "site 'x'")


def _subsample_data_not_indexed(x):
    with jsvi.plate("data", 3, subsample_size=2):
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x)


case("subsample_data_not_indexed", _subsample_data_not_indexed, empty_guide, (X3,),
     ShapeError, "sample site 'x': obs has shape \\(3,\\), size 3 at dim -1, but plate "
     "'data' has 2")


def _subsample_model(x):
    with jsvi.plate("data", 3, subsample_size=2) as idx:
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x[idx])


def _subsample_guide(x):
    del x
    with jsvi.plate("data", 3, subsample_size=1):
        jsvi.sample("z", dist.Normal(0.0, 1.0))


case("subsample_sizes_differ_model_guide", _subsample_model, _subsample_guide, (X3,),
     ShapeError, "plate 'data'")


def _bad_subsample(x):
    with jsvi.plate("data", 3, subsample_size=2, subsample=jnp.arange(3)) as idx:
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x[idx])


case("subsample_indices_wrong_length", _bad_subsample, empty_guide, (X3,),
     ShapeError, "plate 'data'")


def _plate_too_small(x):
    with jsvi.plate("data", 3, subsample_size=5):
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x)


case("subsample_larger_than_size", _plate_too_small, empty_guide, (X3,),
     ArgumentError, "plate 'data'")


# --- params ------------------------------------------------------------------------
def _param_twice_shape(x):
    del x
    a = jsvi.param("m", jnp.zeros(()))
    b = jsvi.param("m", jnp.zeros(2))
    jsvi.sample("z", dist.Normal(a + b.sum(), 1.0))


case("param_redeclared_other_shape", mu_model, _param_twice_shape, (X3,), ShapeError,
     "param 'm': declared again with an init of shape")


def _param_twice_constraint(x):
    del x
    a = jsvi.param("s", 1.0, constraint=constraints.positive)
    b = jsvi.param("s", 0.5, constraint=constraints.unit_interval)
    jsvi.sample("z", dist.Normal(0.0, a + b))


case("param_redeclared_other_constraint", mu_model, _param_twice_constraint, (X3,),
     SiteError, "param 's': declared again with constraint")


def _shared_model(x):
    s = jsvi.param("s", 1.0, constraint=constraints.positive)
    z = jsvi.sample("z", dist.Normal(0.0, s))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


def _shared_guide(x):
    del x
    s = jsvi.param("s", 1.0)
    jsvi.sample("z", dist.Normal(0.0, jnp.exp(s)))


case("param_shared_model_guide_constraints_differ", _shared_model, _shared_guide, (X3,),
     SiteError, "param 's': declared with constraint")


def _init_outside(x):
    del x
    s = jsvi.param("s", -1.0, constraint=constraints.positive)
    jsvi.sample("z", dist.Normal(0.0, s))


case("param_init_outside_constraint", mu_model, _init_outside, (X3,), SupportError,
     "param 's': init value lies outside its constraint")


def _init_nan(x):
    del x
    m = jsvi.param("m", jnp.nan)
    jsvi.sample("z", dist.Normal(m, 1.0))


case("param_init_nan", mu_model, _init_nan, (X3,), SupportError, "param 'm'")


def _init_boundary(x):
    del x
    s = jsvi.param("s", 0.0, constraint=constraints.nonnegative)
    jsvi.sample("z", dist.Normal(0.0, s + 1.0))


case("param_init_on_boundary", mu_model, _init_boundary, (X3,), SupportError,
     "param 's': init value is not finite in unconstrained space")


def _simplex_init(x):
    del x
    p = jsvi.param("p", jnp.array([0.5, 0.6]), constraint=constraints.simplex)
    jsvi.sample("z", dist.Normal(p[0], 1.0))


case("param_init_not_on_simplex", mu_model, _simplex_init, (X3,), SupportError,
     "param 'p'")


# --- distributions and observations --------------------------------------------------
def _bad_scale(x):
    z = jsvi.sample("z", dist.Normal(0.0, -1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


case("invalid_distribution_argument", _bad_scale, normal_guide(), (X3,), SupportError,
     "'z'.*scale")


def _obs_out_of_support(x):
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Exponential(1.0), obs=x)


case("obs_out_of_support", _obs_out_of_support, empty_guide, (X3,), SupportError,
     "'x'")


def _bernoulli_obs(x):
    p = jsvi.param("p", 0.5, constraint=constraints.unit_interval)
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("y", dist.Bernoulli(p), obs=x)


case("bernoulli_obs_not_binary", _bernoulli_obs, empty_guide, (X3,), SupportError,
     "'y'")


def _poisson_obs(x):
    rate = jsvi.param("rate", 1.0, constraint=constraints.positive)
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("n", dist.Poisson(rate), obs=x)


case("count_obs_not_integer", _poisson_obs, empty_guide, (X3,), SupportError,
     "sample site 'n': value violates its constraint")


def _string_obs(x):
    del x
    rate = jsvi.param("rate", 1.0, constraint=constraints.positive)
    with jsvi.plate("data", 2):
        jsvi.sample("n", dist.Poisson(rate), obs=np.array(["a", "b"]))


case("obs_wrong_dtype", _string_obs, empty_guide, (X3,), ArgumentError, "'n'")


def _categorical_obs(x):
    del x
    with jsvi.plate("data", 3):
        jsvi.sample("c", dist.Categorical(probs=jnp.ones(3) / 3), obs=COUNTS)


case("categorical_obs_out_of_range", _categorical_obs, empty_guide, (X3,), SupportError,
     "'c'")


def _guide_support_model(x):
    s = jsvi.sample("s", dist.HalfNormal(1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(0.0, s), obs=x)


case("guide_support_wider_than_model", _guide_support_model, normal_guide("s"), (X3,),
     SupportError, "guide site 's': the guide draws from Normal")


def _discrete_guide_for_continuous(x):
    del x
    jsvi.sample("z", dist.Bernoulli(0.5))


case("guide_discrete_for_continuous_site", mu_model, _discrete_guide_for_continuous,
     (X3,), SupportError, "guide site 'z'")


def _neg_inf_factor(x):
    mu_model(x)
    jsvi.factor("penalty", -jnp.inf)


case("nonfinite_log_density", _neg_inf_factor, normal_guide(), (X3,), NonFiniteError,
     "model site 'penalty'")


# --- enumeration -------------------------------------------------------------------
def _enum_continuous(x):
    z = jsvi.sample("z", dist.Normal(0.0, 1.0), infer={"enumerate": "parallel"})
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


case("enumerate_continuous_site", _enum_continuous, empty_guide, (X3,), SiteError,
     "'z'", jsvi.TraceEnum_ELBO())


def _mix_model(x):
    with jsvi.plate("data", x.shape[0]):
        c = jsvi.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        jsvi.sample("x", dist.Normal(c * 2.0, 1.0), obs=x)


case("enumerated_site_without_traceenum", _mix_model, empty_guide, (X3,), SiteError,
     "model site 'c': marked for enumeration and absent from the guide",
     jsvi.Trace_ELBO())


def _nested(x):
    with jsvi.plate("a", 2), jsvi.plate("b", 3):
        c = jsvi.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        jsvi.sample("x", dist.Normal(c, 1.0), obs=jnp.broadcast_to(x, (2, 3)))


case("too_many_plates_for_max_plate_nesting", _nested, empty_guide, (X3,), JsviError,
     "'c'|'x'", jsvi.TraceEnum_ELBO(max_plate_nesting=1))


def _huge_support(x):
    n = jsvi.sample("n", dist.Categorical(logits=jnp.zeros(50)),
                    infer={"enumerate": "parallel"})
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(n * 1.0, 1.0), obs=x)


case("enumerated_support_too_large", _huge_support, empty_guide, (X3,), JsviError,
     "'n'.*50", jsvi.TraceEnum_ELBO(max_enum_size=10))


def _guide_enum_observed_model(x):
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("c", dist.Bernoulli(0.5), obs=jnp.ones(3))


def _guide_enum_observed_guide(x):
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})


case("guide_enumerates_observed_site", _guide_enum_observed_model,
     _guide_enum_observed_guide, (X3,), ModelGuideMismatchError, "'c'",
     jsvi.TraceEnum_ELBO())


# --- baselines ---------------------------------------------------------------------
def _baseline_guide(options, dist_fn=None):
    def guide(x):
        del x
        p = jsvi.param("p", 0.5, constraint=constraints.unit_interval)
        d = dist.Bernoulli(p) if dist_fn is None else dist_fn(p)
        jsvi.sample("z", d, infer={"baseline": options})

    return guide


def _bern_model(x):
    z = jsvi.sample("z", dist.Bernoulli(0.5))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


TG = jsvi.TraceGraph_ELBO()
case("baseline_on_reparameterized_site", mu_model,
     _baseline_guide({"use_decaying_avg_baseline": True},
                     lambda p: dist.Normal(p, 1.0)),
     (X3,), SiteError, "guide site 'z': has a baseline but is reparameterized", TG)
case("baseline_unknown_option", _bern_model, _baseline_guide({"use_avg": True}), (X3,),
     SiteError, "'z'", TG)
case("baseline_beta_out_of_range", _bern_model,
     _baseline_guide({"use_decaying_avg_baseline": True, "baseline_beta": 1.5}), (X3,),
     SiteError, "'z'", TG)
case("nn_baseline_without_input", _bern_model,
     _baseline_guide({"nn_baseline": lambda x: x}), (X3,), SiteError, "'z'", TG)


def _baseline_in_model(x):
    z = jsvi.sample("z", dist.Bernoulli(0.5),
                    infer={"baseline": {"use_decaying_avg_baseline": True}})
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


case("baseline_in_model", _baseline_in_model, _baseline_guide(None), (X3,), SiteError,
     "model site 'z': has infer\\['baseline'\\]", TG)


# --- culprits that used to go unnamed (raised while the model or guide runs) ---------
def _param_guide(init, constraint=None):
    def guide(x):
        del x
        kw = {} if constraint is None else {"constraint": constraint}
        jsvi.sample("z", dist.Normal(jsvi.param("m", init, **kw), 1.0))

    return guide


case("param_init_string", mu_model, _param_guide("0.5"), (X3,), ArgumentError,
     "param 'm': init_value holds a str")
case("param_init_callable_without_key", mu_model, _param_guide(lambda: 0.5), (X3,),
     ArgumentError, "param 'm': init_value is a callable that takes no arguments")
case("constraint_given_as_string", mu_model, _param_guide(0.5, "positive"), (X3,),
     ArgumentError, "param 'm': constraint must be a jsvi constraint.*constraints.positive")


def _class_model(x):
    jsvi.sample("z", dist.Normal)
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x)


case("distribution_class_not_instance", _class_model, normal_guide(), (X3,), ArgumentError,
     "sample site 'z': fn is the class Normal")


def _typo_model(x):
    c = jsvi.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "paralel"})
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(c, 1.0), obs=x)


case("enumerate_option_typo", _typo_model, empty_guide, (X3,), SiteError,
     "sample site 'c': infer\\['enumerate'\\] is 'paralel'")


def _if_model(x):
    z = jsvi.sample("z", dist.Normal(0.0, 1.0))
    if z > 0:
        with jsvi.plate("data", x.shape[0]):
            jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


case("python_if_on_latent", _if_model, normal_guide(), (X3,), SiteError,
     "model, after site 'z': Python control flow")


def _huge_plate_model(x):
    z = jsvi.sample("z", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", 2**40, subsample_size=x.shape[0]):
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x)


case("plate_size_past_int32", _huge_plate_model, normal_guide(), (X3,), ArgumentError,
     "plate 'data': size 1099511627776 is past")


def _mask_model(mask):
    def model(x):
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        with jsvi.plate("data", x.shape[0]), handlers.mask(mask=mask):
            jsvi.sample("x", dist.Normal(z, 1.0), obs=x)

    return model


case("mask_widens_log_density", _mask_model(jnp.ones((3, 1), bool)), normal_guide(),
     (X3,), ShapeError, "site 'x': its mask has shape \\(3, 1\\)")
case("mask_of_wrong_length", _mask_model(jnp.ones((2,), bool)), normal_guide(),
     (X3,), ShapeError, "site 'x': its mask has shape \\(2,\\)")


def _gamma_model(x):
    rate = jsvi.sample("rate", dist.Gamma(2.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(rate, 1.0), obs=x)


def _uniform_guide(x):
    del x
    loc = jsvi.param("loc", jnp.zeros(()))
    jsvi.sample("rate", dist.Uniform(loc - 1.0, loc + 1.0))


case("array_bounded_guide_support_outside_model", _gamma_model, _uniform_guide, (X3,),
     SupportError, "guide site 'rate': the guide draws from Uniform")


def _expand_enumerated_model(x):
    c = jsvi.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(c, 1.0).expand((x.shape[0],)), obs=x)


case("expand_on_enumerated_value", _expand_enumerated_model, empty_guide, (X3,),
     ShapeError, "model, after site 'c': Normal.expand", jsvi.TraceEnum_ELBO())


# --- everyday idioms: local params, missing data ------------------------------------
def _local_param_guide(size, event_dim):
    def guide(x):
        with jsvi.plate("data", 3, subsample_size=2):
            loc = jsvi.param("z_loc", jnp.zeros(size), event_dim=event_dim)
            jsvi.sample("z", dist.Normal(loc, 1.0))

    return guide


case("local_param_not_plate_size", _subsample_model, _local_param_guide(4, 0), (X3,),
     ShapeError, "param 'z_loc': value of shape \\(4,\\).*plate 'data' has size 3")
case("local_param_without_event_dim", _subsample_model, _local_param_guide(3, None),
     (X3,), ShapeError, "sample site 'z'.*declare it inside the plate with event_dim")


def _obs_mask_without_obs(x):
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=None, obs_mask=~jnp.isnan(x))


case("obs_mask_without_obs", _obs_mask_without_obs, empty_guide, (X3,), ArgumentError,
     "sample site 'x': obs_mask is given but obs is None")


def _param_never_declared_model(x):
    jsvi.sample("z", dist.Normal(jsvi.param("loc"), 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x)


case("param_without_init_never_declared", _param_never_declared_model, normal_guide(),
     (X3,), SiteError, "param 'loc': no init_value, and no param of that name")


# --- jsvi.scan ------------------------------------------------------------------


def _scan_hmm(history: int, carried: int = 1):
    def model(x):
        probs = jnp.array([[0.9, 0.1], [0.2, 0.8]])

        def step(zs, xt):
            z = jsvi.sample(
                "z", dist.Categorical(probs[zs[-1]]), infer={"enumerate": "parallel"}
            )
            jsvi.sample("x", dist.Normal(2.0 * z, 1.0), obs=xt)
            return zs[1:] + (z,), None

        jsvi.scan(step, (0,) * carried, x, history=history)

    return model


case("scan_enumerated_without_traceenum", _scan_hmm(1), empty_guide, (X3,), SiteError,
     "model site 'z': marked for enumeration and absent from the guide",
     jsvi.Trace_ELBO())
case("scan_carry_reaches_past_history", _scan_hmm(1, 2), empty_guide, (X3,),
     SiteError, "scan \\(enumerated sites \\['z'\\]\\): .* reaches back 2 steps, "
     "but history=1", jsvi.TraceEnum_ELBO())


def _cases() -> list:
    return [pytest.param(name, c, id=name) for name, c in CASES.items()]


def test_catalogue_has_at_least_forty_programs():
    assert len(CASES) >= 40, len(CASES)


@pytest.mark.parametrize("name,c", _cases())
def test_validate_raises(name, c):
    del name
    with pytest.raises(c.error, match=c.match) as info:
        jsvi.validate(c.model, c.guide, *c.args, loss=c.loss)
    _check_message(info.value)


@pytest.mark.parametrize("name,c", _cases())
def test_svi_init_raises_the_same(name, c):
    del name
    loss = jsvi.Trace_ELBO() if c.loss is None else c.loss
    with pytest.raises(c.error, match=c.match) as info:
        svi = jsvi.SVI(c.model, c.guide, optax.adam(1e-2), loss)
        jsvi.svi_init(svi, 0, *c.args)
    _check_message(info.value)


def _check_message(err: BaseException) -> None:
    """``<where>: <what>. <fix>.``: the message opens with its place and is long
    enough to say what to change."""
    text = str(err)
    assert ": " in text.split("\n")[0], text
    assert len(text) > 60, text


# --- not model/guide pairs -----------------------------------------------------------
def test_sample_outside_any_handler_asks_for_seed():
    with pytest.raises(MissingRNGKeyError, match="sample site 'z'.*handlers.seed"):
        jsvi.sample("z", dist.Normal(0.0, 1.0))


def test_subsampled_plate_outside_any_handler_asks_for_seed():
    with pytest.raises(MissingRNGKeyError, match="plate site 'data'.*handlers.seed"):
        with jsvi.plate("data", 10, subsample_size=2):
            pass


def test_primitives_that_need_no_key_work_outside_handlers():
    assert float(jsvi.param("m", 1.5)) == 1.5
    assert float(jsvi.sample("x", dist.Normal(0.0, 1.0), obs=0.3)) == pytest.approx(0.3)
    with jsvi.plate("data", 3) as idx:
        np.testing.assert_array_equal(idx, np.arange(3))


def test_sample_name_must_be_a_string():
    with pytest.raises(ArgumentError, match="sample: name must be a str"):
        handlers.seed(lambda: jsvi.sample(3, dist.Normal(0.0, 1.0)), rng_key=0)()


def test_validate_rejects_a_non_estimator_loss():
    with pytest.raises(ArgumentError, match="validate: loss must be an ELBO"):
        jsvi.validate(mu_model, normal_guide(), X3, loss=optax.adam(1e-3))


def test_trace_elbo_warns_that_it_ignores_baselines():
    guide = _baseline_guide({"use_decaying_avg_baseline": True})
    with pytest.warns(jsvi.errors.JsviWarning, match="guide site 'z': has baseline"):
        jsvi.validate(_bern_model, guide, X3, loss=jsvi.Trace_ELBO())


def test_svi_validate_false_skips_the_checks():
    svi = jsvi.SVI(mu_model, _init_outside, optax.adam(1e-2), jsvi.Trace_ELBO(),
                   validate=False)
    state = jsvi.svi_init(svi, 0, X3)  # no error: the init value goes unchecked
    assert not np.isfinite(float(state.params["s"]))
    with pytest.raises(ArgumentError, match="SVI: validate must be True or False"):
        jsvi.SVI(mu_model, _init_outside, optax.adam(1e-2), jsvi.Trace_ELBO(),
                 validate=1)


def test_structural_checks_run_under_vmap_of_svi_init():
    svi = jsvi.SVI(mu_model, _shape_guide, optax.adam(1e-2), jsvi.Trace_ELBO())
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ShapeError, match="sample site 'z'"):
        jax.vmap(lambda k: jsvi.svi_init(svi, k, X3))(keys)


def test_docs_errors_lists_every_catalogue_case_and_error_class():
    import pathlib

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    missing = [name for name in CASES if f"`{name}`" not in text]
    assert not missing, f"docs/errors.md does not list {missing}"
    classes = [n for n in jsvi.errors.__all__ if n not in ("JsviError",)]
    assert not [n for n in classes if f"`{n}`" not in text]

