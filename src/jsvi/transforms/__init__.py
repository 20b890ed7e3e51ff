"""Bijective transforms and ``biject_to(constraint)``.

A :class:`Transform` maps values of its ``domain`` onto its ``codomain``:
``t(x)``, ``t.inv(y)`` and ``t.log_abs_det_jacobian(x, y)`` (summed over the
transform's own event dims, so its shape is the batch shape). All of them accept
leading batch dims and work under ``jit``, ``vmap`` and ``grad``. Transforms are
pytrees: array parameters (``AffineTransform``'s ``loc`` and ``scale``, ...) are
leaves, everything else is static.

``biject_to(constraint)`` returns a transform from unconstrained reals onto the
constraint; its table is built at import and never mutated.

The package: ``_base`` (the base class, elementwise, affine, independent and
composed transforms), ``matrix`` (simplex and matrix transforms) and ``biject``
(``biject_to``). This module only re-exports. Imports only ``jsvi.constraints``,
``jsvi._typing`` and ``jsvi.errors`` (within jsvi).
"""

from jsvi.transforms._base import (
    AffineTransform,
    ComposeTransform,
    ExpTransform,
    IdentityTransform,
    IndependentTransform,
    PowerTransform,
    SigmoidTransform,
    Transform,
    register_attribute_pytree,
)
from jsvi.transforms.biject import biject_to
from jsvi.transforms.matrix import (
    CholeskyOuterTransform,
    CorrCholeskyTransform,
    LowerCholeskyTransform,
    StickBreakingTransform,
)

__all__ = [
    "AffineTransform",
    "CholeskyOuterTransform",
    "ComposeTransform",
    "CorrCholeskyTransform",
    "ExpTransform",
    "IdentityTransform",
    "IndependentTransform",
    "LowerCholeskyTransform",
    "PowerTransform",
    "SigmoidTransform",
    "StickBreakingTransform",
    "Transform",
    "biject_to",
    "register_attribute_pytree",
]
