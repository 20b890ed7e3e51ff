"""ELBO estimators, and the pieces of them that the layers above use (running
guide and model, parameter transforms, checks). Re-exports only."""

from jsvi.infer.checks import check_traces, is_internal, value_checks
from jsvi.infer.elbo import ELBO, is_reparameterized
from jsvi.infer.meanfield_elbo import TraceMeanField_ELBO
from jsvi.infer.params import (
    ParamFn,
    constrain,
    constrained_param_fn,
    unconstrain,
    unconstrained_param_fn,
)
from jsvi.infer.renyi_elbo import RenyiELBO
from jsvi.infer.trace_elbo import Trace_ELBO
from jsvi.infer.traceenum_elbo import TraceEnum_ELBO
from jsvi.infer.tracegraph_elbo import TraceGraph_ELBO
from jsvi.infer.traces import check_signatures, feasible_draws, get_traces, init_values

__all__ = [
    "ELBO",
    "ParamFn",
    "RenyiELBO",
    "TraceEnum_ELBO",
    "TraceGraph_ELBO",
    "TraceMeanField_ELBO",
    "Trace_ELBO",
    "check_signatures",
    "check_traces",
    "constrain",
    "constrained_param_fn",
    "feasible_draws",
    "get_traces",
    "init_values",
    "is_internal",
    "is_reparameterized",
    "unconstrain",
    "unconstrained_param_fn",
    "value_checks",
]
