"""ELBO estimators. Re-exports only."""

from jsvi.infer.trace_elbo import Trace_ELBO
from jsvi.infer.tracegraph_elbo import TraceGraph_ELBO

__all__ = ["TraceGraph_ELBO", "Trace_ELBO"]
