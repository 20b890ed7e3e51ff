"""ELBO estimators. Re-exports only."""

from jsvi.infer.trace_elbo import Trace_ELBO

__all__ = ["Trace_ELBO"]
