"""Statistical assertions for tests of Monte Carlo estimators (ours and users').

May import: ``jsvi._typing`` only (plus numpy).
"""

from __future__ import annotations

import numpy as np

from jsvi._typing import ArrayLike

__all__ = ["assert_mc_close", "standard_error"]


def standard_error(draws: ArrayLike) -> np.ndarray:
    """Standard error of the mean over the leading axis: ``std(ddof=1) / sqrt(n)``."""
    draws = np.asarray(draws, dtype=np.float64)
    return draws.std(0, ddof=1) / np.sqrt(draws.shape[0])


def assert_mc_close(
    draws: ArrayLike, expected: ArrayLike, *, z: float = 4.0, floor: float = 1e-6
) -> None:
    """Assert the mean of ``draws`` (leading axis) is within ``z`` standard errors.

    The standard error comes from the draws themselves. ``z = 4`` gives about 6e-5
    false failures per scalar under the normal approximation (use n >= 1000);
    ``floor`` (relative to ``max(1, |expected|)``) absorbs float rounding when the
    draws have (near) zero variance.

    Example:
        >>> import numpy as np
        >>> draws = np.random.default_rng(0).normal(1.0, 2.0, size=4000)
        >>> assert_mc_close(draws, 1.0)
    """
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim == 0 or draws.shape[0] < 2:
        raise ValueError(
            f"assert_mc_close: need at least 2 draws along axis 0, got shape {draws.shape}."
        )
    expected = np.asarray(expected, dtype=np.float64)
    mean = draws.mean(0)
    se = standard_error(draws)
    err = np.abs(mean - expected)
    bound = z * se + floor * np.maximum(1.0, np.abs(expected))
    if np.any(err > bound):
        raise AssertionError(
            f"MC mean {mean} vs expected {expected}: |error| {err} exceeds {z} standard "
            f"errors ({z * se}, n={draws.shape[0]})."
        )
