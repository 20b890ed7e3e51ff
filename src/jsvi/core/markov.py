"""``markov``: declare a chain of steps so that enumeration dims are recycled.

``for t in markov(range(T), history=1):`` runs the loop body once per item, like
the plain loop, and tells the ``enum`` handler (``jsvi.core.enumeration``) where
each step begins. A site enumerated more than ``history`` steps back is then no
longer visible, and its dim goes to the next site that needs one, so a chain of
any length uses ``history + 1`` enumeration dims per site of a step instead of
one per site of the whole run. ``TraceEnum_ELBO`` sums each site out in turn,
so time and memory grow linearly in ``T``.

Without an ``enum`` handler on the stack the messages do nothing.

May import: ``jsvi.core.runtime``, ``jsvi.core.enumeration``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from jsvi.core.enumeration import MARKOV_KIND
from jsvi.core.runtime import Message, apply_stack
from jsvi.errors import ArgumentError

__all__ = ["markov"]

T = TypeVar("T")


class _Token:
    """Identifies one chain (one ``markov`` loop) in the enum handler."""

    __slots__ = ()


def _send(action: str, token: _Token, history: int) -> None:
    apply_stack(
        Message(kind=MARKOV_KIND, name="_jsvi/markov", args=(action, token, history))
    )


def markov(iterable: Iterable[T], history: int = 1) -> Iterator[T]:
    """Iterate over ``iterable``, declaring each item a step of a Markov chain.

    What is sampled at step ``t`` may depend on the sites of the ``history``
    steps before it (and on sites outside the loop), never on older steps of
    the loop. Enumeration dims of older sites are reused, so a Python-loop HMM
    with enumerated states costs time and memory linear in its length. Plates
    may sit around the loop or inside its body; loops may nest.

    Args:
        iterable: the steps, e.g. ``range(T)``.
        history: how many earlier steps a step may depend on (``>= 0``).

    Yields:
        The items of ``iterable``.

    Raises:
        ArgumentError: ``history`` is not an int ``>= 0``.

    Example:
        >>> import jax, jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> trans = jnp.array([[0.9, 0.1], [0.2, 0.8]])
        >>> @jsvi.config_enumerate
        ... def hmm(ys):
        ...     s = 0
        ...     for t in jsvi.markov(range(len(ys))):
        ...         s = jsvi.sample(f"s_{t}", dist.Categorical(trans[s]))
        ...         jsvi.sample(f"y_{t}", dist.Normal(s * 1.0, 1.0), obs=ys[t])
        >>> ys = jnp.zeros(100)
        >>> loss = jsvi.TraceEnum_ELBO().loss(jax.random.key(0), {}, hmm, lambda ys: None, ys)
        >>> bool(jnp.isfinite(loss))
        True
    """
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise ArgumentError(
            f"markov: history must be an int >= 0, got {history!r}. Use history=1 "
            "for a first-order chain, history=2 if a step uses the two before it."
        )
    token = _Token()
    _send("enter", token, history)
    try:
        for item in iterable:
            _send("step", token, history)
            yield item
    finally:
        _send("exit", token, history)
