"""``AutoGuideList``: one guide made of autoguides that each cover part of a model.

May import (within jsvi): ``jsvi.autoguide._base``, ``jsvi.autoguide._prototype``,
``jsvi.core``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from jsvi._typing import Array, ModelFn, Params, Shape
from jsvi.autoguide._base import AutoGuide, with_deterministic
from jsvi.autoguide._prototype import prototype_trace
from jsvi.core.handlers import as_key, block, seed
from jsvi.errors import ArgumentError, ModelGuideMismatchError

__all__ = ["AutoGuideList"]


def _seed_hidden_sites(model: ModelFn) -> ModelFn:
    """``block(model, ...)`` with a ``seed`` inside the block.

    A part-guide runs its blocked model hidden (to find its sites and their
    initial values); the sites the block hides never reach the handlers outside
    it, so they are drawn from the prior with a key given inside.
    """
    if isinstance(model, block) and not isinstance(model.fn, seed):
        return block(seed(model.fn, rng_key=0), hide_fn=model._hide)
    return model


class AutoGuideList:
    """A guide that runs several autoguides, each over some of the model's sites.

    Build each part on ``handlers.block(model, expose=[...])`` or
    ``handlers.block(model, hide=[...])`` so that it sees only its own sites; every
    continuous latent site of the model must be covered by exactly one part
    (checked on the first call, naming the site). Give parts of the same class
    different ``prefix`` values when their parameter names could clash.
    ``median``, ``quantiles`` and ``sample_posterior`` merge the parts' results.

    The parts' blocked models get a ``seed`` inside their ``block`` (the hidden
    sites need a key when a part runs its model alone).

    Args:
        model: the whole model.
        guides: the part autoguides, in the order they run.

    Example:
        >>> import jax, optax, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> from jsvi.autoguide import AutoDelta, AutoGuideList, AutoNormal
        >>> def model():
        ...     s = jsvi.sample("s", dist.Gamma(2.0, 2.0))
        ...     z = jsvi.sample("z", dist.Normal(0.0, s))
        ...     jsvi.sample("x", dist.Normal(z, 1.0), obs=1.0)
        >>> guide = AutoGuideList(model, [AutoDelta(handlers.block(model, expose=["s"])),
        ...                               AutoNormal(handlers.block(model, hide=["s"]))])
        >>> svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
        >>> state, _ = jsvi.svi_run(svi, 0, 200, progress_bar=False)
        >>> sorted(guide.median(jsvi.get_params(svi, state)))
        ['s', 'z']
    """

    def __init__(self, model: ModelFn, guides: Sequence[AutoGuide]):
        if not callable(model):
            raise ArgumentError(
                f"AutoGuideList: model must be callable, got {type(model).__name__}."
            )
        guides = list(guides) if isinstance(guides, (list, tuple)) else guides
        if not isinstance(guides, list) or not guides:
            raise ArgumentError(
                "AutoGuideList: guides must be a non-empty list of autoguides, got "
                f"{guides!r}."
            )
        for i, g in enumerate(guides):
            if not isinstance(g, AutoGuide):
                raise ArgumentError(
                    f"AutoGuideList: guides[{i}] is {type(g).__name__}, not an "
                    "autoguide. Pass e.g. AutoNormal(handlers.block(model, "
                    "hide=[...]))."
                )
            g.model = _seed_hidden_sites(g.model)
        self.model = model
        self.guides = tuple(guides)

    def __repr__(self) -> str:
        return f"AutoGuideList({', '.join(repr(g) for g in self.guides)})"

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """Run every part; return all sampled values by site name."""
        values: dict[str, Array] = {}
        owner: dict[str, int] = {}
        for i, g in enumerate(self.guides):
            for name, value in g(*args, **kwargs).items():
                if name in owner:
                    raise ModelGuideMismatchError(
                        f"AutoGuideList: site {name!r} is covered by guides[{owner[name]}] "
                        f"({type(self.guides[owner[name]]).__name__}) and guides[{i}] "
                        f"({type(g).__name__}). Block it in one of them "
                        "(handlers.block(model, hide=[...]))."
                    )
                owner[name] = i
                values[name] = value
        self._check_cover(owner, args, kwargs)
        return values

    def _check_cover(self, owner: dict, args: tuple, kwargs: dict) -> None:
        tr, _ = prototype_trace(self.model, args, kwargs)
        for name, site in tr.latent_sites().items():
            if name in owner or site.infer.get("enumerate") == "parallel":
                continue
            raise ModelGuideMismatchError(
                f"AutoGuideList: model site {name!r} is covered by none of the guides. "
                f"Expose it to one of them (handlers.block(model, expose=[{name!r}, "
                "...]))."
            )

    # -- after training -----------------------------------------------------------
    def median(self, params: Params, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """The parts' medians, merged (see ``AutoGuide.median``)."""
        out: dict[str, Array] = {}
        for g in self.guides:
            out.update(g.median(params, *args, **kwargs))
        return out

    def quantiles(
        self, params: Params, quantiles: Any, *args: Any, **kwargs: Any
    ) -> dict[str, Array]:
        """The parts' quantiles, merged (see ``AutoGuide.quantiles``)."""
        out: dict[str, Array] = {}
        for g in self.guides:
            out.update(g.quantiles(params, quantiles, *args, **kwargs))
        return out

    def sample_posterior(
        self,
        rng_key: Any,
        params: Params,
        *args: Any,
        sample_shape: Shape = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        """Draws from every part (independent keys), merged, with the whole
        model's ``deterministic`` sites computed from them when it can be run."""
        key = as_key(rng_key, "AutoGuideList.sample_posterior")
        out: dict[str, Array] = {}
        for i, g in enumerate(self.guides):
            out.update(
                g.sample_posterior(
                    jax.random.fold_in(key, i), params, *args,
                    sample_shape=sample_shape, **kwargs,
                )
            )
        if isinstance(sample_shape, int):
            sample_shape = (sample_shape,)
        shape = tuple(int(s) for s in sample_shape)
        # a part's deterministic values (from its blocked model) are replaced
        return with_deterministic(
            self.model, out, params, jax.random.fold_in(key, len(self.guides)),
            args, kwargs, shape,
        )
