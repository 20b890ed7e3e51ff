"""Public effect handlers (``jsvi.handlers``); re-exports of ``jsvi.core.handlers``."""

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

__all__ = [
    "block",
    "condition",
    "config_enumerate",
    "mask",
    "replay",
    "scale",
    "seed",
    "substitute",
    "trace",
]
