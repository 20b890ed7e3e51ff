"""``to_arviz``: posterior (and predictive) draws as an ArviZ ``InferenceData``,
for ArviZ's plots and summaries. ArviZ is an optional extra, imported on first
use.

May import (within jsvi): ``jsvi.errors``.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from jsvi.errors import ArgumentError, ShapeError

__all__ = ["to_arviz"]


def _import_arviz() -> Any:
    try:
        with warnings.catch_warnings():
            # Some ArviZ releases announce their next major version on import.
            warnings.simplefilter("ignore", FutureWarning)
            return importlib.import_module("arviz")
    except ImportError:
        raise ArgumentError(
            "to_arviz: needs the optional dependency 'arviz', which is not "
            "installed. Install it with `pip install arviz`."
        ) from None


def _as_group(
    samples: Mapping[str, Any] | None, group: str, num_chains: int
) -> dict[str, np.ndarray] | None:
    if samples is None:
        return None
    if not isinstance(samples, Mapping) or not samples:
        raise ArgumentError(
            f"to_arviz: {group} must be a non-empty dict site name -> array with a "
            f"leading axis over draws, got {type(samples).__name__}."
        )
    out = {}
    for name, value in samples.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] % num_chains:
            raise ShapeError(
                f"to_arviz: {group} site {name!r} has shape {value.shape}; its leading "
                f"axis (draws) must split into num_chains={num_chains} equal chains. "
                "Stack the draws along axis 0."
            )
        draws = value.shape[0] // num_chains
        out[name] = value.reshape((num_chains, draws) + value.shape[1:])
    return out


def to_arviz(
    samples: Mapping[str, Any],
    *,
    posterior_predictive: Mapping[str, Any] | None = None,
    log_likelihood: Mapping[str, Any] | None = None,
    observed_data: Mapping[str, Any] | None = None,
    num_chains: int = 1,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, list[str]] | None = None,
) -> Any:
    """Turn posterior draws into an ArviZ ``InferenceData``.

    Args:
        samples: dict site name -> array ``(num_draws, ...)``, e.g. from
            ``guide.sample_posterior`` or ``Predictive``.
        posterior_predictive: optional draws of predicted sites, same layout.
        log_likelihood: optional pointwise log-likelihoods, dict observed site
            name -> array ``(num_draws, *batch_shape)`` (``jsvi.log_likelihood``
            gives them), so that ``arviz.loo`` and ``arviz.waic`` run.
        observed_data: optional dict site name -> observed array (no draw axis).
        num_chains: split the draw axis into this many chains (chain-major).
        coords, dims: passed to ArviZ (named coordinates of the site dims).

    Returns:
        ``arviz.InferenceData`` with a ``posterior`` group (and the others given).

    Raises:
        ArgumentError: arviz is not installed, or the inputs are not dicts.
        ShapeError: a site has no draw axis, or it does not split into chains.

    Example:
        >>> import numpy as np
        >>> idata = to_arviz({"mu": np.random.default_rng(0).normal(size=(500,))})
        >>> idata.posterior["mu"].shape
        (1, 500)
    """
    if (
        isinstance(num_chains, bool)
        or not isinstance(num_chains, int)
        or num_chains < 1
    ):
        raise ArgumentError(
            f"to_arviz: num_chains must be an int >= 1, got {num_chains!r}."
        )
    az = _import_arviz()
    posterior = _as_group(samples, "samples", num_chains)
    predictive = _as_group(posterior_predictive, "posterior_predictive", num_chains)
    log_lik = _as_group(log_likelihood, "log_likelihood", num_chains)
    observed = None
    if observed_data is not None:
        observed = {k: np.asarray(v) for k, v in observed_data.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return az.from_dict(
            posterior=posterior,
            posterior_predictive=predictive,
            log_likelihood=log_lik,
            observed_data=observed,
            coords=None if coords is None else dict(coords),
            dims=None if dims is None else dict(dims),
        )
