"""Exceptions and warnings raised by jsvi.

Every error is a ``JsviError`` and also the builtin it refines, so ``except
ValueError`` keeps working. Messages follow ``<where>: <what is wrong>. <how to
fix>.``, where ``<where>`` names the site, param, plate, file or function at
fault. ``docs/errors.md`` describes each class and lists the malformed programs of
``tests/test_error_catalogue.py`` that raise it.

Imports nothing from jsvi.
"""

from __future__ import annotations

__all__ = [
    "JsviError",
    "ArgumentError",
    "ShapeError",
    "SiteError",
    "ModelGuideMismatchError",
    "MissingRNGKeyError",
    "SupportError",
    "NonFiniteError",
    "CheckpointError",
    "StateError",
    "JsviWarning",
    "PlateBroadcastWarning",
    "GuidePlateWarning",
    "EnumerationWarning",
]


class JsviError(Exception):
    """Base class of every error jsvi raises on purpose."""


class ArgumentError(JsviError, ValueError):
    """A function or distribution got an argument value it cannot use."""


class ShapeError(JsviError, ValueError):
    """Shapes disagree: a site and its plates, ``obs`` and its distribution, ..."""


class SiteError(JsviError, ValueError):
    """A site is malformed: duplicate name, ``obs`` in a guide, bad ``infer`` option."""


class ModelGuideMismatchError(JsviError, ValueError):
    """The model and the guide do not agree on their latent sites or signatures."""


class MissingRNGKeyError(JsviError, RuntimeError):
    """A sample site needs randomness but no ``handlers.seed`` supplies a key."""


class SupportError(JsviError, ValueError):
    """A value lies outside the support or constraint it must satisfy."""


class NonFiniteError(JsviError, FloatingPointError):
    """Training produced non-finite losses or gradients too many times in a row."""


class CheckpointError(JsviError, OSError):
    """A checkpoint file is missing, corrupted or belongs to another state."""


class StateError(JsviError, ValueError):
    """A state does not belong to this ``SVI``: other params, constraints or
    optimizer."""


class JsviWarning(UserWarning):
    """Base class of jsvi's warnings."""


class PlateBroadcastWarning(JsviWarning):
    """An observed value of size 1 along a plate dim of size > 1 is broadcast and
    counted once per plate element. Pyro allows it; it is usually a bug."""


class GuidePlateWarning(JsviWarning):
    """The guide has a plate that the model does not: its sites are not scaled
    or batched alike in the two (Pyro warns the same way)."""


class EnumerationWarning(JsviWarning):
    """An enumeration option that has no effect: a site marked for enumeration
    that is observed, or an enumerating estimator with no site to enumerate."""
