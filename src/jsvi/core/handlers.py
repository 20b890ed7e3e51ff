"""Effect handlers: ``seed``, ``trace``, ``replay``, ``substitute``, ``condition``,
``block``, ``scale``, ``mask`` (and ``config_enumerate``); ``do``, ``scope``,
``lift`` and ``uncondition`` (Pyro/NumPyro names) live in ``jsvi.core.more_handlers``.

Each works as a wrapper, ``seed(model, rng_key=0)(*args)``, as a context
manager, ``with seed(rng_key=0): ...``, and as a decorator with its arguments,
``@scale(factor=2.0)``. A handler keeps only its configuration;
data of one run (a seed's site counter, a trace's sites) is created on entry.

May import: ``jsvi.core.*``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import ArrayLike, ModelFn, PRNGKey, is_concrete
from jsvi.core.runtime import Handler, Message
from jsvi.core.trace import Site, Trace
from jsvi.errors import ArgumentError, SiteError

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


# Every handler also decorates (``Handler.__call__``): kept as the base name here.
_Handler = Handler


def _batch_of_keys(where: str, batch: tuple) -> ArgumentError:
    return ArgumentError(
        f"{where}: rng_key is a batch of keys of shape {batch}, but one key is "
        "expected. For one run per key, map over them: "
        "jax.vmap(lambda k: jsvi.svi_init(svi, k, ...))(keys)."
    )


def as_key(rng_key: Any, where: str = "seed") -> PRNGKey:
    """Normalise an int, a raw ``PRNGKey`` or a typed key to a typed key."""
    if isinstance(rng_key, (int, np.integer)) and not isinstance(rng_key, bool):
        return jax.random.key(int(rng_key))
    if isinstance(rng_key, jax.Array) or not is_concrete(rng_key):
        shape = tuple(getattr(rng_key, "shape", ()))
        if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
            if shape != ():
                raise _batch_of_keys(where, shape)
            return rng_key
        if rng_key.dtype == jnp.uint32 and shape[-1:] == (2,):
            if len(shape) != 1:
                raise _batch_of_keys(where, shape[:-1])
            return jax.random.wrap_key_data(rng_key)
        if jnp.issubdtype(rng_key.dtype, jnp.integer) and shape == ():
            return jax.random.key(rng_key)  # a (traced) integer seed
    if isinstance(rng_key, np.ndarray) and rng_key.dtype == np.uint32:
        return jax.random.wrap_key_data(jnp.asarray(rng_key))
    raise ArgumentError(
        f"{where}: rng_key must be a jax.random.key, a jax.random.PRNGKey or an int, "
        f"got {type(rng_key).__name__}. Pass e.g. rng_key=jax.random.key(0)."
    )


class seed(_Handler):
    """Give every site that needs randomness its own key, derived from ``rng_key``.

    The i-th site that asks gets its own key, derived from ``rng_key`` and ``i``
    alone (see ``site_key``), so the same function, key and inputs give the same
    trace every time. Sites inside a handler that stops messages (``block``)
    placed *inside* ``seed`` do not reach it.

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> f = handlers.seed(lambda: jsvi.sample("z", dist.Normal(0.0, 1.0)), rng_key=1)
        >>> bool(f() == f())
        True
    """

    def __init__(self, fn: ModelFn | None = None, rng_key: Any = None):
        super().__init__(fn)
        if rng_key is None:
            raise ArgumentError(
                "seed: rng_key is required. Pass e.g. seed(model, rng_key=jax.random.key(0))."
            )
        self.rng_key = as_key(rng_key)
        self._counter = 0

    def _on_enter(self) -> seed:
        self._counter = 0
        return self

    def process(self, msg: Message) -> None:
        needs_key = (
            (msg.kind == "sample" and msg.value is None)
            or (msg.kind == "plate" and msg.value is None)
            or (msg.kind == "param" and msg.value is None and callable(msg.args[0]))
            or msg.kind == "prng_key"
        )
        if needs_key and msg.rng_key is None:
            msg.rng_key = _site_key(self.rng_key, self._counter)
            self._counter += 1


def _site_key(rng_key: PRNGKey, i: int) -> PRNGKey:
    """The key ``seed(..., rng_key)`` gives the i-th site that asks for one.

    For the default threefry keys (and rbg keys), it is ``rng_key`` with ``i + 1``
    XORed into the first word of its key data: a distinct key for each site, at
    the cost of one fused XOR, where ``fold_in`` would run a whole threefry hash
    (on CPU a compiled loop with a dozen kernels, a visible share of a small
    model's step). This is the way counter-based generators are meant to be
    keyed, one key per stream: ``jax.random.key(s)`` likewise differs from
    ``key(s + 1)`` in one word only. The ``num_rejected`` retry salt of SVI goes
    into the last word, so the two never cancel. Other key layouts use
    ``fold_in(rng_key, i)``.
    """
    data = jax.random.key_data(rng_key)
    if data.dtype != jnp.uint32 or data.ndim == 0 or data.shape[-1] < 2:
        return jax.random.fold_in(rng_key, i)
    tag = np.zeros(data.shape[-1], np.uint32)
    tag[0] = i + 1
    return jax.random.wrap_key_data(data ^ tag, impl=jax.random.key_impl(rng_key))


class trace(_Handler):
    """Record every site of a run into a ``Trace``.

    ``trace(fn).get_trace(*args)`` runs ``fn`` and returns the trace;
    ``with trace() as tr:`` binds a ``Trace`` that fills as the block runs.
    """

    def __init__(self, fn: ModelFn | None = None):
        super().__init__(fn)
        self._trace: Trace | None = None

    def _on_enter(self) -> Trace:
        self._trace = Trace()
        return self._trace

    def process(self, msg: Message) -> None:
        # A plate entered a second time in one run reuses its first indices.
        if msg.kind == "plate" and msg.value is None and self._trace is not None:
            old = self._trace.get(msg.name)
            if old is not None and old.kind == "plate" and old.args == msg.args:
                msg.value = old.value
        elif self._trace is not None:
            _declared_param(msg, self._trace)

    def postprocess(self, msg: Message) -> None:
        if msg.kind.startswith("_") or msg.kind == "prng_key" or self._trace is None:
            return
        self._trace._add(Site.from_message(msg))

    def get_trace(self, *args: Any, **kwargs: Any) -> Trace:
        """Run the wrapped function and return its trace."""
        if self.fn is None:
            raise ArgumentError("trace.get_trace: no function wrapped. Use trace(fn).")
        with self as tr:
            self.fn(*args, **kwargs)
        return tr


def _declared_param(msg: Message, earlier: Mapping[str, Any]) -> None:
    """A ``param`` declared without an init takes the value and constraint of
    the param of that name in ``earlier`` (a trace)."""
    if msg.kind != "param" or msg.args[:1] != (None,):
        return
    site = earlier.get(msg.name)
    if site is None or site["type"] != "param":
        return
    if msg.constraint is None:
        msg.constraint = site["constraint"]
    if msg.value is None:
        msg.value = site["value"]


class replay(_Handler):
    """Reuse the values of ``trace``'s latent sample sites (and plate indices).

    Sites the running function observes keep their observations.
    """

    def __init__(self, fn: ModelFn | None = None, trace: Mapping[str, Any] | None = None):
        super().__init__(fn)
        if trace is None:
            raise ArgumentError("replay: trace is required, e.g. replay(model, trace=tr).")
        self.trace = trace

    def process(self, msg: Message) -> None:
        _declared_param(msg, self.trace)
        if msg.kind not in ("sample", "plate") or msg.is_observed:
            return
        site = self.trace.get(msg.name)
        if site is None:
            return
        if site["type"] != msg.kind:
            raise SiteError(
                f"{msg.kind} site {msg.name!r}: the replayed trace has a "
                f"{site['type']} site of that name. Rename one of them."
            )
        msg.value = site["value"]


class substitute(_Handler):
    """Fix the values of param (and latent sample/plate) sites.

    ``data`` maps names to values, exactly as the site will return them
    (constrained, for params). ``substitute_fn(msg) -> value or None`` computes them
    instead.
    """

    def __init__(
        self,
        fn: ModelFn | None = None,
        data: Mapping[str, Any] | None = None,
        substitute_fn: Callable[[Message], Any] | None = None,
    ):
        super().__init__(fn)
        if (data is None) == (substitute_fn is None):
            raise ArgumentError(
                "substitute: pass exactly one of data= (a dict name -> value) or "
                "substitute_fn=."
            )
        self.data = data
        self.substitute_fn = substitute_fn

    def process(self, msg: Message) -> None:
        if msg.kind not in ("param", "sample", "plate") or msg.is_observed:
            return
        if self.data is not None:
            value = self.data.get(msg.name)
        else:
            value = self.substitute_fn(msg)
        if value is not None:
            msg.value = value


class condition(_Handler):
    """Observe sample sites at the values in ``data``."""

    def __init__(self, fn: ModelFn | None = None, data: Mapping[str, Any] | None = None):
        super().__init__(fn)
        if data is None:
            raise ArgumentError("condition: data is required (a dict name -> value).")
        self.data = data

    def process(self, msg: Message) -> None:
        if msg.kind == "sample" and msg.name in self.data:
            msg.value = self.data[msg.name]
            msg.is_observed = True


class block(_Handler):
    """Hide sites from the handlers outside this one.

    Args:
        hide: names to hide (default: all, unless another option is given).
        expose: names to let through; everything else is hidden.
        hide_fn: ``msg -> bool`` deciding per message.
        hide_types: site types to hide (``"sample"``, ``"param"``,
            ``"deterministic"``, ``"plate"``).
        expose_types: site types to let through; every other type is hidden.

    The first option given, in the order ``hide_fn``, ``hide``, ``expose_types``,
    ``hide_types``, ``expose``, decides (as in NumPyro).

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     jsvi.param("w", 1.0)
        ...     jsvi.sample("z", dist.Normal(0.0, 1.0))
        >>> blocked = handlers.block(handlers.seed(model, rng_key=0), expose_types=["param"])
        >>> list(handlers.trace(blocked).get_trace())
        ['w']
    """

    def __init__(
        self,
        fn: ModelFn | None = None,
        hide: Container[str] | None = None,
        expose: Container[str] | None = None,
        hide_fn: Callable[[Message], bool] | None = None,
        hide_types: Container[str] | None = None,
        expose_types: Container[str] | None = None,
    ):
        super().__init__(fn)
        for option, value in (("hide_types", hide_types), ("expose_types", expose_types)):
            if isinstance(value, str):
                raise ArgumentError(
                    f"block: {option} must be a list of site types, got the str "
                    f"{value!r}. Pass e.g. {option}=[{value!r}]."
                )
        if hide_fn is not None:
            self._hide = hide_fn
        elif hide is not None:
            self._hide = lambda msg: msg.name in hide
        elif expose_types is not None:
            self._hide = lambda msg: msg.kind not in expose_types
        elif hide_types is not None:
            self._hide = lambda msg: msg.kind in hide_types
        elif expose is not None:
            self._hide = lambda msg: msg.name not in expose
        else:
            self._hide = lambda msg: True

    def process(self, msg: Message) -> None:
        if not msg.kind.startswith("_") and self._hide(msg):
            msg.stop = True


class scale(_Handler):
    """Multiply the log-density of every enclosed sample site by ``factor``.

    Typical use: ``N / batch_size`` for hand-made minibatches, or a KL annealing
    weight.
    """

    def __init__(self, fn: ModelFn | None = None, factor: ArrayLike | None = None):
        super().__init__(fn)
        if factor is None:
            raise ArgumentError("scale: factor is required, e.g. scale(model, factor=0.1).")
        if isinstance(factor, (int, float)) and not factor > 0:
            raise ArgumentError(
                f"scale: factor must be positive, got {factor}. To drop sites from the "
                "loss, use mask(fn, mask=False)."
            )
        self.factor = factor

    def process(self, msg: Message) -> None:
        if msg.kind == "sample":
            msg.scale = self.factor if msg.scale is None else msg.scale * self.factor


class mask(_Handler):
    """Mask the log-density of enclosed sample sites (``False`` drops an element).

    ``mask`` is a bool or a boolean array that broadcasts with each site's batch
    shape.
    """

    def __init__(self, fn: ModelFn | None = None, mask: ArrayLike | bool | None = None):
        super().__init__(fn)
        if mask is None:
            raise ArgumentError("mask: mask is required (a bool or boolean array).")
        if not isinstance(mask, bool):
            dtype = getattr(mask, "dtype", None)
            if dtype is None or not jnp.issubdtype(dtype, jnp.bool_):
                raise ArgumentError(
                    f"mask: mask must be a bool or boolean array, got {dtype or type(mask).__name__}. "
                    "Convert it with x.astype(bool)."
                )
        self.mask = mask

    def process(self, msg: Message) -> None:
        if msg.kind == "sample":
            msg.mask = self.mask if msg.mask is None else msg.mask & self.mask


class _enumerate_config(Handler):
    def __init__(self, fn: ModelFn, default: str):
        super().__init__(fn)
        self.default = default

    def process(self, msg: Message) -> None:
        if (
            msg.kind == "sample"
            and not msg.is_observed
            and getattr(msg.fn, "is_discrete", False)
            and "enumerate" not in msg.infer
        ):
            msg.infer = {**msg.infer, "enumerate": self.default}


def config_enumerate(fn: ModelFn | None = None, default: str = "parallel") -> Any:
    """Mark every discrete latent sample site of ``fn`` with ``infer["enumerate"]``.

    Usable as ``config_enumerate(guide)`` or as a decorator, with or without
    arguments. Sites that already set ``enumerate`` keep their own choice.
    """
    if default not in ("parallel", "sequential", None):
        raise ArgumentError(
            f"config_enumerate: default must be 'parallel', 'sequential' or None, got "
            f"{default!r}."
        )
    if fn is None:
        return lambda f: config_enumerate(f, default)
    return _enumerate_config(fn, default)
