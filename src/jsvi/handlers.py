"""Public effect handlers (``jsvi.handlers``); re-exports of ``jsvi.core.handlers``,
``jsvi.core.more_handlers`` and of ``jsvi.reparam.reparam``."""

from jsvi.core.handlers import (
    block,
    condition,
    config_enumerate,
    mask,
    replay,
    scale,
    seed,
    substitute,
    trace,
)
from jsvi.core.more_handlers import do, lift, scope, uncondition
from jsvi.reparam import reparam

__all__ = [
    "block",
    "condition",
    "config_enumerate",
    "mask",
    "reparam",
    "replay",
    "scale",
    "seed",
    "substitute",
    "trace",
    # Pyro/NumPyro handlers
    "do",
    "lift",
    "scope",
    "uncondition",
]
