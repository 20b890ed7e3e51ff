"""jsvi: purely functional stochastic variational inference in JAX.

Re-exports only; see ``API.md`` for the public surface.
"""

from jsvi import (
    autoguide,
    constraints,
    diagnostics,
    distributions,
    errors,
    handlers,
    nn,
    reparam,
    testing,
    transforms,
)
from jsvi.arviz import to_arviz
from jsvi.checking import ValidationReport, validate
from jsvi.checkpoint import load_state, save_state
from jsvi.core.local_params import subsample
from jsvi.core.markov import markov
from jsvi.core.plates import plate_stack
from jsvi.core.primitives import deterministic, factor, param, plate, prng_key, sample
from jsvi.core.scan import scan
from jsvi.core.trace import Site, Trace, format_shapes
from jsvi.distributions import enable_validation
from jsvi.distributions.kl import kl_divergence
from jsvi.handlers import config_enumerate
from jsvi.infer import (
    RenyiELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
)
from jsvi.infer.discrete import infer_discrete
from jsvi.infer.log_likelihood import log_likelihood
from jsvi.loop import EarlyStopping, svi_run
from jsvi.optim import per_param
from jsvi.predictive import Predictive
from jsvi.svi import (
    SVI,
    SVIState,
    evaluate_loss,
    get_params,
    svi_init,
    svi_update,
)

__version__ = "0.1.0"

__all__ = [
    "EarlyStopping",
    "Predictive",
    "RenyiELBO",
    "SVI",
    "SVIState",
    "Site",
    "Trace",
    "TraceEnum_ELBO",
    "TraceGraph_ELBO",
    "TraceMeanField_ELBO",
    "Trace_ELBO",
    "ValidationReport",
    "autoguide",
    "config_enumerate",
    "constraints",
    "deterministic",
    "diagnostics",
    "distributions",
    "enable_validation",
    "errors",
    "evaluate_loss",
    "factor",
    "format_shapes",
    "get_params",
    "handlers",
    "infer_discrete",
    "kl_divergence",
    "load_state",
    "log_likelihood",
    "markov",
    "nn",
    "param",
    "per_param",
    "plate",
    "prng_key",
    "reparam",
    "sample",
    "save_state",
    "scan",
    "svi_init",
    "svi_run",
    "svi_update",
    "testing",
    "to_arviz",
    "transforms",
    "validate",
    # everyday idioms (Pyro/NumPyro names)
    "plate_stack",
    "subsample",
]
