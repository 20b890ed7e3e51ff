"""Structural checks of ``TraceEnum_ELBO``'s traces: guide-enumerated sites
and the model sites they meet, and guide values that broadcast against the
model's enumeration dims.

May import: ``jsvi.core``, ``jsvi.infer.traces``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsvi._typing import shape_of
from jsvi.core.scan import SCAN_SUMMED_KEY
from jsvi.core.trace import Trace
from jsvi.errors import ShapeError, SiteError
from jsvi.infer.traces import check_model_guide

__all__ = ["check_distinct_guide_dims", "check_enum_model_guide"]


def check_distinct_guide_dims(guide_enum: Mapping[str, int]) -> None:
    seen: dict[int, str] = {}
    for name, dim in guide_enum.items():
        if dim in seen:
            raise SiteError(
                f"guide sites {seen[dim]!r} and {name!r}: enumerated in the guide "
                f"along the same dim {dim} (inside jsvi.markov, which reuses dims). "
                "Guide-side enumeration does not recycle dims: enumerate the chain "
                "in the model (leave it out of the guide), or drop jsvi.markov "
                "from the guide."
            )
        seen[dim] = name


def check_enum_model_guide(
    model_tr: Trace, guide_tr: Trace, guide_enum: Mapping[str, int], nesting: int
) -> None:
    for name in guide_enum:
        m_site = model_tr.sample_sites().get(name)
        if m_site is not None and m_site.is_observed:
            raise SiteError(
                f"guide site {name!r}: enumerated in the guide, but the model observes "
                "it. A guide describes latent variables only: remove the site (or its "
                "'enumerate' option) from the guide."
            )
    check_model_guide(model_tr, guide_tr, check_shapes=False)
    if guide_enum:
        return
    model_sites = model_tr.sample_sites()
    for name, g_site in guide_tr.latent_sites().items():
        m_site = model_sites.get(name)
        if m_site is not None and SCAN_SUMMED_KEY not in m_site.infer:
            _check_broadcast_value(name, m_site.fn, g_site.value, nesting)


def _check_broadcast_value(name: str, fn: Any, value: Any, nesting: int) -> None:
    """A guide's value must have the model's shape, except that it may lack (or
    have size 1 at) enumeration dims, left of the ``nesting`` plate dims: the
    model's distribution depends on an enumerated site there, and the value
    broadcasts against it."""
    batch, event = tuple(fn.batch_shape), tuple(fn.event_shape)
    got = shape_of(value)
    n_event = len(event)
    got_batch = got[: len(got) - n_event]
    fits = got[len(got) - n_event :] == event and len(got_batch) <= len(batch)
    for d in range(-len(batch), 0):
        if not fits:
            break
        size = got_batch[d] if len(got_batch) >= -d else 1
        fits = size == batch[d] or (size == 1 and -d > nesting)
    if not fits:
        raise ShapeError(
            f"sample site {name!r}: the guide draws values of shape {got}, but "
            f"the model's distribution has batch_shape {batch} and event_shape "
            f"{event} (value shape {batch + event}; enumeration dims, left of the "
            f"{nesting} plate dims, may be left out). Make the two agree: use the "
            "same plates in model and guide, and .expand(...)/.to_event(n) where a "
            "site holds several values."
        )
