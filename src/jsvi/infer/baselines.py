"""Baselines for score-function gradients, as ``(init, update)`` pairs and parsers.

A baseline ``b`` is subtracted from a site's downstream cost inside the
score-function term ``log q(z) * stop_gradient(cost - b)``. Any ``b`` that does not
depend on ``z`` keeps the gradient unbiased; a good one (close to the expected cost)
lowers its variance. Options come from a guide site's
``infer={"baseline": {...}}``:

- ``use_decaying_avg_baseline`` (+ ``baseline_beta``, default 0.90): an exponential
  moving average of the particle-mean cost, kept in ``SVIState.elbo_state``;
- ``nn_baseline`` (+ ``nn_baseline_input``): a callable whose weights come from
  ``jsvi.param``; it is trained only through the baseline loss
  ``(stop_gradient(cost) - b) ** 2``;
- ``baseline_value``: a value of the user's, trained (if it depends on params)
  through the same loss.

A decaying average may be combined with a network or a value: their sum is the
baseline, as in Pyro.

May import: ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ArrayLike
from jsvi.errors import SiteError

__all__ = ["BaselineSpec", "DecayingAverage", "parse_baseline"]

_KNOWN = {
    "use_decaying_avg_baseline",
    "baseline_beta",
    "nn_baseline",
    "nn_baseline_input",
    "baseline_value",
}


class DecayingAverage(NamedTuple):
    """Exponential moving average of a cost: ``avg <- beta * avg + (1 - beta) * cost``."""

    beta: float = 0.90

    def init(self, cost: Array) -> Array:
        """Zeros shaped like the (per-element) downstream cost."""
        return jnp.zeros(jnp.shape(cost), jnp.result_type(cost))

    def update(self, avg: Array, cost: Array) -> Array:
        """Fold in one step's particle-mean cost (treated as a constant)."""
        return self.beta * avg + (1.0 - self.beta) * jax.lax.stop_gradient(cost)


class BaselineSpec(NamedTuple):
    """A guide site's parsed baseline options.

    Attributes:
        decaying: the moving-average strategy, or None.
        nn: ``nn_baseline`` callable, or None.
        nn_input: its input (stop-gradiented before the call).
        value: ``baseline_value``, or None.
    """

    decaying: DecayingAverage | None = None
    nn: Callable[[Any], ArrayLike] | None = None
    nn_input: Any = None
    value: ArrayLike | None = None

    @property
    def trained(self) -> bool:
        """Whether the site contributes a baseline loss."""
        return self.nn is not None or self.value is not None

    def learned_part(self) -> Array:
        """The network's output or the user's value (0 if neither)."""
        if self.nn is not None:
            return jnp.asarray(self.nn(jax.lax.stop_gradient(self.nn_input)))
        if self.value is not None:
            return jnp.asarray(self.value)
        return jnp.zeros(())


def parse_baseline(name: str, options: Mapping[str, Any] | None) -> BaselineSpec | None:
    """Validate ``infer["baseline"]`` of guide site ``name``; None if absent/empty."""
    if not options:
        return None
    if not isinstance(options, Mapping):
        raise SiteError(
            f"guide site {name!r}: infer['baseline'] must be a dict, got "
            f"{type(options).__name__}. Use e.g. "
            "{'use_decaying_avg_baseline': True, 'baseline_beta': 0.9}."
        )
    unknown = sorted(set(options) - _KNOWN)
    if unknown:
        raise SiteError(
            f"guide site {name!r}: unknown baseline option(s) {unknown}. Known: "
            f"{sorted(_KNOWN)}."
        )
    nn, value = options.get("nn_baseline"), options.get("baseline_value")
    if nn is not None and value is not None:
        raise SiteError(
            f"guide site {name!r}: both nn_baseline and baseline_value given. Use one "
            "of them (a decaying average may be added to either)."
        )
    if nn is not None:
        if not callable(nn):
            raise SiteError(
                f"guide site {name!r}: nn_baseline must be callable, got "
                f"{type(nn).__name__}. Pass a function of nn_baseline_input whose "
                "weights come from jsvi.param."
            )
        if "nn_baseline_input" not in options:
            raise SiteError(
                f"guide site {name!r}: nn_baseline needs nn_baseline_input (the "
                "network's input, e.g. the data point)."
            )
    elif "nn_baseline_input" in options:
        raise SiteError(
            f"guide site {name!r}: nn_baseline_input given without nn_baseline."
        )
    decaying = None
    if options.get("use_decaying_avg_baseline", False):
        beta = options.get("baseline_beta", 0.90)
        if not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
            raise SiteError(
                f"guide site {name!r}: baseline_beta must be a number in [0, 1), got "
                f"{beta!r}."
            )
        decaying = DecayingAverage(float(beta))
    elif "baseline_beta" in options:
        raise SiteError(
            f"guide site {name!r}: baseline_beta given without "
            "use_decaying_avg_baseline=True."
        )
    if decaying is None and nn is None and value is None:
        return None
    return BaselineSpec(decaying, nn, options.get("nn_baseline_input"), value)
