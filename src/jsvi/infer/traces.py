"""Running a guide, then the model replayed against it, and the checks that
compare the two traces (sites, shapes, signatures, validated arguments).

May import: ``jsvi.core``, ``jsvi.distributions``, ``jsvi.infer.params``,
``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, ModelFn, PRNGKey, all_true, shape_of
from jsvi.core.handlers import replay, seed, substitute, trace
from jsvi.core.runtime import Handler, Message
from jsvi.core.trace import Trace
from jsvi.distributions import ExpandedDistribution
from jsvi.errors import JsviError, ModelGuideMismatchError, ShapeError, SiteError
from jsvi.infer.params import ParamFn

__all__ = [
    "MODEL_KEY_OFFSET",
    "check_model_guide",
    "check_signatures",
    "feasible_draws",
    "get_traces",
    "user_stacklevel",
    "validation_flags",
]

# The guide's sites use seed's per-site keys of ``key``; the model's stream is
# fold_in(key, MODEL_KEY_OFFSET), a hash of it, so the two never meet.
MODEL_KEY_OFFSET = 2**31 - 1

# Frames in these folders are not the user's (``user_stacklevel``).
_LIBRARY_DIRS = tuple(
    folder + os.sep
    for folder in (
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # jsvi
        os.path.dirname(jax.__file__ or ""),
    )
    if folder
)

# ---------------------------------------------------------------------------
# running guide and model


class feasible_draws(Handler):
    """Give latent sample sites a fixed point of their support instead of a draw,
    and plates the first ``subsample_size`` indices.

    ``svi_init`` runs model and guide this way: parameters, shapes and value checks
    need no random draws, and the compiled init program then contains no samplers
    (some, such as Gamma's, take a second to compile).
    """

    def process(self, msg: Message) -> None:
        if msg.value is not None:
            return
        if msg.kind == "sample":
            shape = tuple(msg.fn.batch_shape) + tuple(msg.fn.event_shape)
            support = getattr(msg.fn, "support", None)
            base = msg.fn
            while isinstance(base, ExpandedDistribution):  # a plate expanded it
                base = base.base_dist
            point = getattr(base, "v", None)  # a Delta: its own point
            if point is not None:
                msg.value = jnp.broadcast_to(point, shape)
            elif support is not None:
                discrete = getattr(msg.fn, "is_discrete", False)
                dtype = jnp.asarray(0).dtype if discrete else jnp.asarray(0.0).dtype
                msg.value = support.feasible_like(jnp.zeros(shape, dtype))
        elif msg.kind == "plate":
            _, subsample_size = msg.args
            # concrete (NumPy) indices: a sequential plate yields Python ints
            msg.value = np.arange(subsample_size)


def init_values(msg: Any) -> None:
    """A ``param_fn`` for ``get_traces`` that substitutes nothing: every param
    takes its own init value."""
    del msg
    return None


def get_traces(
    rng_key: PRNGKey,
    model: ModelFn,
    guide: ModelFn,
    param_fn: ParamFn,
    args: tuple,
    kwargs: Mapping[str, Any],
    draw: bool = True,
) -> tuple[Trace, Trace]:
    """Run the guide, then the model replayed against it; return both traces.

    The guide runs under ``seed(rng_key)``; the model under ``seed`` with
    ``fold_in(rng_key, MODEL_KEY_OFFSET)`` (for its own plates and keys, a stream
    distinct from the guide's per-site keys of ``rng_key``), with the guide's
    latent values and plate indices replayed. The model's key is computed only if
    the model draws anything. With ``draw=False`` latent sites take a fixed point
    of their support (see ``feasible_draws``).
    """
    if not draw:
        guide, model = feasible_draws(guide), feasible_draws(model)
    guide_tr = trace(
        located(seed(substitute(guide, substitute_fn=param_fn), rng_key), "guide")
    ).get_trace(*args, **kwargs)
    model_key = jax.random.fold_in(rng_key, MODEL_KEY_OFFSET)
    model_tr = trace(
        _replayed_shapes(
            located(
                replay(seed(substitute(model, substitute_fn=param_fn), model_key), guide_tr),
                "model",
            ),
            guide_tr,
        )
    ).get_trace(*args, **kwargs)
    check_model_guide(model_tr, guide_tr)
    return model_tr, guide_tr


_TRACED_VALUE_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


class located(Handler):
    """Name the place in the model or guide where an error that names no site
    was raised: the last site that ran before it.

    A Python ``if`` on a traced value becomes a ``SiteError`` that says how to
    write it; a jsvi error whose message names no site gets the place in front.
    """

    def __init__(self, fn: ModelFn, role: str):
        super().__init__(fn)
        self.role = role
        self.last: str | None = None

    def postprocess(self, msg: Message) -> None:
        if msg.kind in ("sample", "param", "deterministic"):
            self.last = msg.name
        elif msg.kind == "plate" and "plate" in msg.kwargs:
            self.plates.append(msg.kwargs["plate"])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.last, self.plates = None, []
        try:
            out = super().__call__(*args, **kwargs)
        except _TRACED_VALUE_ERRORS as e:
            raise SiteError(
                f"{self._where()}: Python control flow or a NumPy/int/float conversion "
                f"on a traced value ({type(e).__name__}). Models run traced inside "
                "jax.jit: write `if z > 0:` as jnp.where(z > 0, a, b) or "
                "jax.lax.cond, and keep values that decide shapes or branches as "
                "static Python values (model arguments that are ints stay static)."
            ) from e
        except JsviError as e:
            text = str(e)
            if "site " in text or "param " in text or "plate " in text:
                raise
            raise type(e)(f"{self._where()}: {text}") from e
        for p in self.plates:
            if not getattr(p, "used", True):
                raise SiteError(
                    f"plate {p.name!r}: created in the {self.role} but never used. A "
                    "plate acts only inside `with jsvi.plate(...):` (vectorized) or "
                    "`for i in jsvi.plate(...):` (sequential); sites after a bare "
                    f"`jsvi.plate({p.name!r}, ...)` call are not in it."
                )
        return out

    def _where(self) -> str:
        if self.last is None:
            return f"{self.role}, before its first site"
        return f"{self.role}, after site {self.last!r}"


class _replayed_shapes(Handler):
    """Compare each replayed guide value with the model site's shape as it arrives.

    ``check_model_guide`` compares them too, but only once the model has finished;
    a wrong shape usually breaks a later site first, with a message about that
    site. Checking here names the site where the guide and model disagree.
    Guide-enumerated values carry extra dims and are not compared.
    """

    def __init__(self, fn: ModelFn, guide_tr: Trace):
        super().__init__(fn)
        self.guide_tr = guide_tr

    def process(self, msg: Message) -> None:
        if msg.kind != "sample" or msg.is_observed:
            return
        g_site = self.guide_tr.get(msg.name)
        if g_site is None or g_site.kind != "sample" or g_site.is_observed:
            return
        if g_site.infer.get("enumerate") == "parallel":
            return
        _check_value_shape(msg.name, msg.fn, g_site.value)


def check_model_guide(
    model_tr: Trace, guide_tr: Trace, check_shapes: bool = True
) -> None:
    """Raise when the model and the guide disagree on their latent sites.

    ``check_shapes=False`` skips comparing value shapes (guide-side enumeration
    adds dims to the values the model sees).
    """
    guide_latent = guide_tr.latent_sites()
    for name in guide_tr.observed_sites():
        raise SiteError(
            f"guide site {name!r}: has obs. A guide describes latent variables only. "
            f"Remove obs=... from the guide's {name!r}; observe it in the model."
        )
    for name, site in model_tr.latent_sites().items():
        if name not in guide_latent and site.infer.get("enumerate") not in (
            "parallel",
            "sequential",
        ):
            raise ModelGuideMismatchError(
                f"model site {name!r}: latent in the model but missing from the guide. "
                f"Add jsvi.sample({name!r}, ...) to the guide, observe it in the model "
                "(obs=...), or mark it for enumeration."
            )
    model_samples = model_tr.sample_sites()
    for name, g_site in guide_latent.items():
        m_site = model_samples.get(name)
        if m_site is None:
            raise ModelGuideMismatchError(
                f"guide site {name!r}: sampled in the guide but not in the model. "
                f"Remove it from the guide or add jsvi.sample({name!r}, ...) to the "
                f"model. Model sites: {sorted(model_samples)}."
            )
        if m_site.is_observed:
            raise ModelGuideMismatchError(
                f"guide site {name!r}: the model observes this site, so the guide must "
                "not sample it. Remove it from the guide."
            )
        if check_shapes:
            _check_value_shape(name, m_site.fn, g_site.value)


def _check_value_shape(name: str, fn: Any, value: Any) -> None:
    expected = tuple(fn.batch_shape) + tuple(fn.event_shape)
    got = shape_of(value)
    if got != expected:
        raise ShapeError(
            f"sample site {name!r}: the guide draws values of shape {got}, but "
            f"the model's distribution has batch_shape {tuple(fn.batch_shape)} "
            f"and event_shape {tuple(fn.event_shape)} (value shape {expected}). "
            "Make the two agree: use the same plates in model and guide, and "
            ".expand(...)/.to_event(n) where a site holds several values."
        )


def check_signatures(model: ModelFn, guide: ModelFn, where: str = "SVI") -> None:
    """Raise when model and guide visibly take different arguments."""
    try:
        m_sig, g_sig = inspect.signature(model), inspect.signature(guide)
    except (TypeError, ValueError):
        return
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if any(p.kind in variadic for p in (*m_sig.parameters.values(), *g_sig.parameters.values())):
        return
    m_names = [p.name for p in m_sig.parameters.values()]
    g_names = [p.name for p in g_sig.parameters.values()]
    if m_names != g_names:
        raise ModelGuideMismatchError(
            f"{where}: model takes ({', '.join(m_names)}) but guide takes "
            f"({', '.join(g_names)}). Both are called with the same arguments; give "
            "them the same signature (add unused arguments and `del` them)."
        )


def validation_flags(traces: tuple[Trace, ...]) -> dict[str, Array]:
    """Boolean arrays, all-True iff every validated distribution is valid.

    Keys read ``"<site>: <argument>"``; the observed value's support check is
    ``"<site>: value"``.
    """
    flags: dict[str, Array] = {}
    for tr in traces:
        for name, site in tr.sample_sites().items():
            fn = site.fn
            check = getattr(fn, "validation_flags", None)
            if check is None or not getattr(fn, "_validate_args", False):
                continue
            value = site.value if site.is_observed else None
            for arg, ok in check(value).items():
                flags[f"sample site {name!r}: {arg}"] = all_true(ok)
    return flags


def user_stacklevel() -> int:
    """``stacklevel`` of the first frame outside jsvi and jax (for warnings)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame, level = frame.f_back, level + 1
    return level