"""The message record, the handler stack and ``apply_stack``.

The handler stack is the one piece of global state in jsvi, and it is private to
each thread: two threads running models at the same time never see each other's
handlers. It exists only while a model or guide is being run under handlers:
``Handler.__enter__`` pushes, ``Handler.__exit__`` pops (also when the model
raises), and ``apply_stack`` reads it. Nothing else touches it.

May import: ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from jsvi._typing import ModelFn
from jsvi.errors import ArgumentError

__all__ = [
    "CondIndepStackFrame",
    "Handler",
    "Message",
    "active_handlers",
    "apply_stack",
    "stack_is_empty",
]


class CondIndepStackFrame(NamedTuple):
    """One plate a site sits in.

    Attributes:
        name: the plate's name.
        dim: the batch dim (negative) of a vectorized plate; ``None`` for an
            iteration of a sequential plate.
        size: the plate's full size.
        subsample_size: how many elements are present in this run.
        counter: the iteration index of a sequential plate (0 for vectorized ones).
    """

    name: str
    dim: int | None
    size: int
    subsample_size: int
    counter: int = 0

    @property
    def vectorized(self) -> bool:
        return self.dim is not None


@dataclasses.dataclass(eq=False)
class Message:
    """What a primitive sends through the handler stack.

    Handlers read and change it in ``process`` (innermost handler first) and see
    the final value in ``postprocess``. ``default`` computes the value when no
    handler supplied one.
    """

    kind: str
    name: str
    fn: Any = None
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    value: Any = None
    is_observed: bool = False
    infer: dict = dataclasses.field(default_factory=dict)
    scale: Any = None
    mask: Any = None
    cond_indep_stack: tuple[CondIndepStackFrame, ...] = ()
    constraint: Any = None
    event_dim: int | None = None
    rng_key: Any = None
    stop: bool = False
    default: Callable[[Message], Any] | None = None


class _ThreadStack(threading.local):
    """The handler stack, one list per thread."""

    def __init__(self) -> None:
        self.handlers: list[Handler] = []


_LOCAL = _ThreadStack()


def _stack() -> list[Handler]:
    return _LOCAL.handlers


def active_handlers() -> tuple[Handler, ...]:
    """The handlers active in this thread, innermost last (a copy: read only)."""
    return tuple(_LOCAL.handlers)


def stack_is_empty() -> bool:
    """True when no handler is active in this thread (always the case outside a
    traced run)."""
    return not _LOCAL.handlers


def apply_stack(msg: Message) -> Message:
    """Send ``msg`` through the active handlers and return it with its value.

    Handlers are applied innermost first; one that sets ``msg.stop`` hides the
    message from the handlers outside it. If no handler set ``msg.value``,
    ``msg.default(msg)`` computes it. Then every handler that processed the message
    sees it again in ``postprocess``, innermost first.
    """
    applied = []
    for handler in reversed(_stack()):
        handler.process(msg)
        applied.append(handler)
        if msg.stop:
            break
    if msg.value is None and msg.default is not None:
        msg.value = msg.default(msg)
    for handler in applied:
        handler.postprocess(msg)
    return msg


class Handler:
    """Base class of effect handlers: a wrapper and a context manager at once.

    ``Handler(fn)(*args)`` runs ``fn`` with the handler active;
    ``with Handler():`` activates it for a block. Subclasses keep only their
    configuration on the instance and create per-run data in ``_on_enter``.
    """

    def __init__(self, fn: ModelFn | None = None):
        if fn is not None and not callable(fn):
            raise ArgumentError(
                f"{type(self).__name__}: fn must be callable, got {type(fn).__name__}. "
                f"Pass the model function itself, e.g. {type(self).__name__}(model, ...)."
            )
        self.fn = fn

    def _on_enter(self) -> Any:
        """Create per-run state; the return value is what ``with ... as`` binds."""
        return self

    def _on_exit(self) -> None:
        """Release per-run state."""

    def __enter__(self) -> Any:
        _stack().append(self)
        try:
            return self._on_enter()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        # Remove this handler and anything left above it (a generator that was not
        # closed, a handler whose exit was skipped), so the stack stays consistent.
        stack = _stack()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is self:
                del stack[i:]
                break
        self._on_exit()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fn is None and len(args) == 1 and not kwargs and callable(args[0]):
            # used as a decorator with arguments: ``@handlers.scale(factor=2.0)``
            bound = copy.copy(self)
            bound.fn = args[0]
            return bound
        if self.fn is None:
            raise ArgumentError(
                f"{type(self).__name__}: no function to run. Wrap one, e.g. "
                f"{type(self).__name__}(model, ...)(*args), or use it as a context "
                "manager."
            )
        with self:
            return self.fn(*args, **kwargs)

    def process(self, msg: Message) -> None:
        """Inspect or change ``msg`` before its value is computed."""

    def postprocess(self, msg: Message) -> None:
        """See ``msg`` after its value is known."""
