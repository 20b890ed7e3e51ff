"""ELBO estimators. Re-exports only."""

from jsvi.infer.meanfield_elbo import TraceMeanField_ELBO
from jsvi.infer.renyi_elbo import RenyiELBO
from jsvi.infer.trace_elbo import Trace_ELBO
from jsvi.infer.traceenum_elbo import TraceEnum_ELBO
from jsvi.infer.tracegraph_elbo import TraceGraph_ELBO

__all__ = [
    "RenyiELBO",
    "TraceEnum_ELBO",
    "TraceGraph_ELBO",
    "TraceMeanField_ELBO",
    "Trace_ELBO",
]
