"""Site-name checks and the missing-key error shared by the primitives.

May import: ``jsvi.errors``.
"""

from __future__ import annotations

from typing import Any

from jsvi.errors import ArgumentError, MissingRNGKeyError

__all__ = ["check_name", "missing_key"]


def missing_key(kind: str, name: str) -> MissingRNGKeyError:
    return MissingRNGKeyError(
        f"{kind} site {name!r}: no random key to draw with. Run the function under "
        "jsvi.handlers.seed(fn, rng_key) (jsvi.svi_init and Predictive do this for "
        "you)" + (", or pass obs=... to observe the site." if kind == "sample" else ".")
    )


def check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str):
        raise ArgumentError(f"{kind}: name must be a str, got {name!r}.")
    if name.startswith("_jsvi/"):
        raise ArgumentError(
            f"{kind} site {name!r}: names starting with '_jsvi/' are reserved for "
            "jsvi's internal sites. Rename the site."
        )
