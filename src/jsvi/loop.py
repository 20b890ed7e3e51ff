"""``svi_run``: the whole training loop, compiled, with a progress bar, checkpoints,
streamed batches, non-finite step rejection and early stopping.

The loop has one counter, the number of steps tried: ``state.step +
state.num_rejected`` (accepted plus rejected). ``num_steps`` and
``checkpoint_every`` both count in it, so a run ends, checkpoints and resumes at
the same points whether or not some of its steps were rejected.

May import: ``jsvi.step``, ``jsvi.state``, ``jsvi.checkpoint``, ``jsvi._args``,
``jsvi.errors``; external: ``tqdm`` (optional). It takes the ``SVI`` as an
argument and never imports ``jsvi.svi``.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._args import split_args
from jsvi._typing import Array
from jsvi.checkpoint import load_state, save_state
from jsvi.errors import (
    ArgumentError,
    CheckpointError,
    JsviWarning,
    NonFiniteError,
    SupportError,
)
from jsvi.state import SVIState
from jsvi.step import nonfinite_params, nonfinite_report

__all__ = ["EarlyStopping", "svi_run"]


class EarlyStopping(NamedTuple):
    """Stop ``svi_run`` when the smoothed loss stops improving.

    The loss is smoothed with an exponential moving average
    (``ema <- smoothing * ema + (1 - smoothing) * loss``). The run stops once the
    average has not gone below ``best - min_delta`` for ``patience`` consecutive
    steps. It is checked between compiled chunks of at most ``patience // 2``
    steps, so the run may go on for up to that many steps past the trigger.

    Attributes:
        patience: steps without improvement before stopping.
        min_delta: the improvement (in loss units) that resets the count.
        smoothing: the moving average's decay, in [0, 1).
    """

    patience: int = 500
    min_delta: float = 0.0
    smoothing: float = 0.9


class _Stopper:
    """Host-side state of an ``EarlyStopping`` rule."""

    def __init__(self, rule: EarlyStopping):
        if not isinstance(rule, EarlyStopping):
            raise ArgumentError(
                f"svi_run: early_stopping must be a jsvi.EarlyStopping, got "
                f"{type(rule).__name__}. Pass e.g. jsvi.EarlyStopping(patience=200)."
            )
        if rule.patience < 1 or not 0.0 <= rule.smoothing < 1.0 or rule.min_delta < 0:
            raise ArgumentError(
                f"svi_run: invalid {rule}: need patience >= 1, 0 <= smoothing < 1 and "
                "min_delta >= 0."
            )
        self.rule = rule
        self.ema: float | None = None
        self.best = np.inf
        self.since_best = 0

    def update(self, losses: np.ndarray) -> bool:
        """Fold in a chunk of losses; True once the rule says stop."""
        rule = self.rule
        for loss in losses:
            if not np.isfinite(loss):
                self.since_best += 1
                continue
            self.ema = loss if self.ema is None else (
                rule.smoothing * self.ema + (1 - rule.smoothing) * loss
            )
            if self.ema < self.best - rule.min_delta:
                self.best, self.since_best = self.ema, 0
            else:
                self.since_best += 1
        return self.since_best >= rule.patience


# Seconds of work between two progress-bar refreshes: long enough that the host
# round trip between chunks costs well under 1% of the loop.
_CHUNK_SECONDS = 0.25


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ArgumentError(f"svi_run: {name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


class _Plan:
    """Chooses chunk lengths: by wall-clock time (progress bar), capped at
    checkpoint boundaries and at half the early-stopping patience."""

    def __init__(self, total, timed, checkpoint_every, patience, first_step):
        self.total, self.timed = total, timed
        self.every, self.first_step = checkpoint_every, first_step
        self.cap = max(1, patience // 2) if patience else None
        self.chunks, self.last_len, self.last_s = 0, 0, 0.0

    def next(self, done: int) -> int:
        left = self.total - done
        if not self.timed:
            length = left
        elif self.chunks == 0:  # a short probe (it may include compilation)
            length = max(1, self.total // 100)
        else:
            rate = self.last_len / max(self.last_s, 1e-9)
            length = int(max(1, rate * _CHUNK_SECONDS))
        if self.cap is not None:
            length = min(length, self.cap)
        if self.every:
            step = self.first_step + done
            length = min(length, self.every - step % self.every)
        return max(1, min(length, left))

    def record(self, length: int, seconds: float) -> None:
        self.chunks, self.last_len, self.last_s = self.chunks + 1, length, seconds


def _batch_stream(batches: Any) -> Iterator[tuple[tuple, dict]]:
    if not isinstance(batches, Iterable):
        raise ArgumentError(
            f"svi_run: batches must be an iterable of (args, kwargs) pairs, got "
            f"{type(batches).__name__}."
        )
    for i, item in enumerate(batches):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict)):
            raise ArgumentError(
                f"svi_run: batch #{i} is not an (args, kwargs) pair. Yield e.g. "
                "((x_batch, y_batch), {})."
            )
        yield tuple(item[0]), item[1]


def _tried(state: SVIState) -> int:
    """Steps tried so far, the loop's one counter (accepted plus rejected)."""
    return int(state.step) + int(state.num_rejected)


def svi_run(
    svi: Any,
    rng_key: Any,
    num_steps: int,
    *args: Any,
    progress_bar: bool = True,
    init_state: SVIState | None = None,
    checkpoint_every: int | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    batches: Iterable[tuple[tuple, dict]] | None = None,
    skip_nonfinite: bool = True,
    max_nonfinite: int = 10,
    early_stopping: EarlyStopping | None = None,
    **kwargs: Any,
) -> tuple[SVIState, Array]:
    """Run ``num_steps`` SVI steps as one compiled loop.

    Equals ``svi_init(svi, rng_key, ...)`` followed by ``num_steps`` calls of
    ``svi_update``, step for step. The steps run in a ``lax.fori_loop`` with
    traced bounds, compiled once per argument shapes: without a progress bar,
    checkpoints or early stopping, in a single call; otherwise in chunks (about a
    quarter second each with the bar) that share that one program. A second call
    with the same shapes, including one resuming from ``init_state``, compiles
    nothing.

    Steps are counted as tried (``state.step + state.num_rejected``): a rejected
    non-finite step counts as one of the ``num_steps`` and towards
    ``checkpoint_every``, just as it counts as one ``svi_update`` call.

    Args:
        svi: the ``jsvi.SVI`` configuration.
        rng_key: key for ``svi_init`` (unused with ``init_state``).
        num_steps: number of steps to try.
        *args, **kwargs: model and guide arguments.
        progress_bar: show a tqdm bar with the running loss (off without tqdm).
        init_state: continue from this state (its own key continues).
        checkpoint_every, checkpoint_path: save the state to ``checkpoint_path``
            (atomically, see ``jsvi.save_state``) after every ``checkpoint_every``
            steps tried (counted from the state's own start, so at multiples of
            ``checkpoint_every`` in ``step + num_rejected``) and at the end. If the
            file exists when the run starts, the run resumes from it and continues
            until the initial count plus ``num_steps``: a run killed and started
            again with the same arguments ends where an uninterrupted one would,
            bit for bit, rejected steps included.
        batches: an iterable of ``(args, kwargs)``, one per step, for data
            streamed from the host (e.g. minibatches of a dataset that does not
            fit on the device, or views of a ``np.memmap``: see
            ``docs/streaming.md``). ``svi_init`` uses the first batch; each step
            is one compiled step call. While step ``i`` runs, batch ``i + 1`` is
            read and its NumPy arrays are copied to the device
            (``jax.device_put``; device arrays pass as they are); at most two
            steps are in flight, and no batch is read past the run's last step
            (after an early stop, at most one). Do not modify a batch's arrays
            after yielding it (e.g. by refilling one buffer): on a CPU, JAX may
            use a NumPy array's memory in place, and the step may still be
            reading it. Yield new arrays or read-only views (``np.memmap`` with
            ``mode="r"``).
            Do not pass ``*args``/``**kwargs`` as well. If it runs out early, the
            run stops there with a warning.
        skip_nonfinite: reject a step whose loss is not finite or that would leave
            a non-finite state (params, optimizer or estimator state; non-finite
            gradients do so with any usual optimizer): the state is kept, but for
            ``num_rejected`` (its next draw differs), and the loss is reported as
            it was. Until the first rejection the steps run unchecked and each
            chunk is checked at its end; if it was not finite, the first step that
            made it so is found by running parts of the chunk again, and from then
            on every step is checked. With ``False``, non-finite values are kept
            and the run ends with a warning.
        max_nonfinite: raise ``NonFiniteError`` after this many consecutive
            rejections, naming the sites, gradients and updates that were not
            finite (checked between chunks).
        init_params: (reserved) warm-start values for ``svi_init`` (see
            ``jsvi.svi_init``); never passed to the model. Not with ``init_state``.
        early_stopping: a ``jsvi.EarlyStopping`` rule on the smoothed loss.
            Learning-rate schedules need nothing from ``svi_run``: pass an
            optax schedule to the optimizer, e.g.
            ``optax.adam(optax.exponential_decay(1e-2, 1000, 0.5))``; its step count
            lives in the optimizer state, so it resumes correctly too.

    Returns:
        ``(final_state, losses)``: ``losses`` holds the loss of every step this call
        tried, shape ``(steps_tried,)`` (``num_steps`` unless resumed, stopped early
        or out of batches).

    Example:
        >>> import jax, optax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     jsvi.sample("x", dist.Normal(jsvi.param("mu", 0.0), 1.0), obs=2.0)
        >>> svi = jsvi.SVI(model, lambda: None, optax.adam(0.1), jsvi.Trace_ELBO())
        >>> state, losses = jsvi.svi_run(svi, 0, 300, progress_bar=False)
        >>> round(float(jsvi.get_params(svi, state)["mu"]), 2)
        2.0
    """
    num_steps = _check_int(num_steps, "num_steps", 1)
    max_nonfinite = _check_int(max_nonfinite, "max_nonfinite", 1)
    if (checkpoint_every is None) != (checkpoint_path is None):
        raise ArgumentError(
            "svi_run: pass both checkpoint_every and checkpoint_path, or neither."
        )
    if checkpoint_every is not None:
        checkpoint_every = _check_int(checkpoint_every, "checkpoint_every", 1)
        _check_writable(checkpoint_path)
    stopper = _Stopper(early_stopping) if early_stopping is not None else None
    init_params = kwargs.pop("init_params", None)
    if init_params is not None and init_state is not None:
        raise ArgumentError(
            "svi_run: pass init_params (a warm start for svi_init) or init_state (a "
            "state to continue), not both."
        )
    warm = {} if init_params is None else {"init_params": init_params}
    stream = None
    if batches is not None:
        if args or kwargs:
            raise ArgumentError(
                "svi_run: pass the data either as arguments or through batches=, not "
                "both."
            )
        stream = _batch_stream(batches)
        try:
            args, kwargs = next(stream)
        except StopIteration:
            raise ArgumentError("svi_run: batches is empty.") from None
    if init_state is not None:
        bad = nonfinite_params(init_state)
        if bad:
            raise NonFiniteError(
                f"svi_run: init_state holds non-finite values for params {bad}. Start "
                "from svi_init, or from a checkpoint written before the values broke."
            )
    state = (
        init_state
        if init_state is not None
        else svi.init(rng_key, *args, **kwargs, **warm)
    )
    target = _tried(state) + num_steps
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        state = load_state(checkpoint_path, like=state)
    total = target - _tried(state)
    if total < 0:
        raise ArgumentError(
            f"svi_run: the checkpoint at {str(checkpoint_path)!r} has tried "
            f"{_tried(state)} steps, past the requested end ({target}). Ask for more "
            "steps."
        )
    if total == 0:
        return state, jnp.zeros((0,), jnp.result_type(float))
    bar = _make_bar(total) if progress_bar else None
    plan = _Plan(
        total,
        bar is not None or stream is not None,
        checkpoint_every,
        stopper.rule.patience if stopper else None,
        _tried(state),
    )
    runner = (
        _StreamRunner(svi, stream, skip_nonfinite, (args, kwargs), total)
        if stream is not None
        else _CompiledRunner(svi, total, skip_nonfinite, args, kwargs)
    )
    streak, done = 0, 0
    try:
        while done < total:
            length = plan.next(done)
            t0 = time.perf_counter()
            state, chunk_losses, chunk_rejected, length = runner.run(state, done, length)
            if length == 0:
                warnings.warn(
                    f"svi_run: batches ran out after {done} of {total} steps; stopping.",
                    JsviWarning,
                    stacklevel=2,
                )
                break
            done += length
            if skip_nonfinite:
                streak = _check_streak(
                    streak, chunk_rejected(), max_nonfinite, svi, state, runner.last_args
                )
            if checkpoint_path is not None and (
                _tried(state) % checkpoint_every == 0 or done == total
            ):
                _save_finite(checkpoint_path, state)
            stop = stopper is not None and stopper.update(np.asarray(chunk_losses()))
            plan.record(length, time.perf_counter() - t0)
            if bar is not None:
                bar.update(length)
                bar.set_postfix(loss=f"{float(chunk_losses()[-1]):.4g}", refresh=False)
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    if not skip_nonfinite and runner.unclean:
        warnings.warn(
            f"svi_run: non-finite losses or state values with skip_nonfinite=False "
            f"(at step {int(state.step)}; non-finite params: "
            f"{nonfinite_params(state) or 'none'}). Pass skip_nonfinite=True (the "
            "default) to reject such steps.",
            JsviWarning,
            stacklevel=2,
        )
    if checkpoint_path is not None and done < total:
        _save_finite(checkpoint_path, state)
    return state, runner.losses(done)


def _check_writable(path: Any) -> None:
    """Fail before the first step, not at the first checkpoint, when ``path``
    cannot be written."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(folder):
        raise CheckpointError(
            f"svi_run: checkpoint_path {str(path)!r}: its folder {folder!r} does not "
            "exist. Create it first (os.makedirs(folder, exist_ok=True))."
        )
    if os.path.isdir(os.fspath(path)):
        raise CheckpointError(
            f"svi_run: checkpoint_path {str(path)!r} is a folder. Give a file path, "
            "e.g. os.path.join(folder, 'run.ckpt')."
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".jsvi-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CheckpointError(
            f"svi_run: checkpoint_path {str(path)!r}: cannot write in {folder!r} "
            f"({e}). Choose a writable folder."
        ) from e


def _save_finite(path: Any, state: SVIState) -> None:
    """Write a checkpoint, unless the state holds non-finite params: the last good
    checkpoint is never overwritten by one."""
    bad = nonfinite_params(state)
    if bad:
        raise NonFiniteError(
            f"svi_run: params {bad} are not finite at step {int(state.step)}; the "
            f"checkpoint {str(path)!r} was not overwritten and holds the last finite "
            "state. Keep skip_nonfinite=True (the default) to reject such steps, check "
            "the data, or lower the learning rate."
        )
    save_state(path, state)


class _CompiledRunner:
    """Runs chunks of the compiled loop on fixed arguments.

    With ``skip_nonfinite`` the steps run unchecked while the state has no
    rejected step (``num_rejected == 0``): the program then only reports, once
    per chunk, whether the chunk's losses and final state are finite. When they
    are not, the first step whose loss or resulting state is not finite is found
    by running the same program again over parts of the chunk (a bisection;
    the same program gives the same numbers over any bounds), that step is
    rejected, and the rest of the run checks every step (``num_rejected > 0``).
    Which program takes a step thus depends on the state only, never on chunk
    boundaries, so runs with and without a progress bar, and resumed runs, agree
    bit for bit.
    """

    def __init__(self, svi: Any, total: int, skip: bool, args: tuple, kwargs: dict):
        self.run_steps, self.skip = svi.compiled.run_steps, skip
        self.dynamic, self.spec = split_args(args, kwargs, "svi_run")
        # From host zeros: jnp.zeros would compile two tiny programs per length.
        self.buf = jax.device_put(np.zeros((total,), jnp.result_type(float)))
        self.rej = jax.device_put(np.zeros((total,), bool))
        self.last_args = (args, kwargs)
        self.unclean = False  # a chunk without skip_nonfinite was not finite

    def _steps(self, state: SVIState, start: int, stop: int, checked: bool):
        state, self.buf, self.rej, flags, clean = self.run_steps(
            state, self.dynamic, self.buf, self.rej, start, stop, self.spec, checked
        )
        return state, flags, clean

    def _first_nonfinite(self, state: SVIState, start: int, stop: int):
        """``(index, state before it)`` of the first step in ``start .. stop-1``,
        run unchecked from ``state``, whose loss or resulting state is not finite
        (the chunk just run was not clean, so there is one)."""
        losses = np.asarray(self.buf[start:stop])
        nonfinite = np.flatnonzero(~np.isfinite(losses))
        first_loss = start + int(nonfinite[0]) if nonfinite.size else stop
        lo, kept, hi = start, state, stop  # the state at lo is finite, at hi not
        if first_loss < stop:
            at = state
            if first_loss > start:
                at, _, clean = self._steps(state, start, first_loss, False)
                if not bool(clean):
                    hi = first_loss
            if hi == stop:  # the state was finite, the step's loss is not
                return first_loss, at
        while hi - lo > 1:
            mid = (lo + hi) // 2
            at, _, clean = self._steps(kept, lo, mid, False)
            if bool(clean):
                lo, kept = mid, at
            else:
                hi = mid
        return lo, kept

    def run(self, state: SVIState, done: int, length: int):
        stop = done + length
        checked = self.skip and int(state.num_rejected) > 0
        start_state = state
        state, flags, clean = self._steps(state, done, stop, checked)
        _raise_invalid_data(flags, state, done, None)
        if not checked and not bool(clean):
            if self.skip:
                bad, kept = self._first_nonfinite(start_state, done, stop)
                self.rej = self.rej.at[bad].set(True)
                state = kept._replace(num_rejected=kept.num_rejected + 1)
                if bad + 1 < stop:
                    state, _, _ = self._steps(state, bad + 1, stop, True)
            else:
                self.unclean = True
        buf, rej = self.buf, self.rej
        return (
            state,
            lambda: buf[done:stop],
            lambda: np.asarray(rej[done:stop]),
            length,
        )

    def losses(self, done: int) -> Array:
        return self.buf[:done]


def _to_device(batch: tuple[tuple, dict]) -> tuple[tuple, dict]:
    """Start copying a batch's host arrays (``np.ndarray``, memory maps included)
    to the default device; ``device_put`` returns at once. Device arrays, sharded
    ones included, and static values are left as they are."""
    return jax.tree.map(
        lambda leaf: jax.device_put(leaf) if isinstance(leaf, np.ndarray) else leaf,
        batch,
    )


class _StreamRunner:
    """Runs steps one compiled step call per streamed batch.

    Double-buffered: once step ``i`` is dispatched (asynchronously), batch
    ``i + 1`` is read from the iterator and its copy to the device started, so
    host reads (e.g. from a memory-mapped file) and transfers overlap step ``i``.
    Then the loop waits for step ``i - 1``: at most two steps and two batches are
    in flight, so host and device memory stay bounded however fast the iterator
    is. No batch is read past the last step of the run (``total``).
    """

    def __init__(self, svi: Any, stream: Iterator, skip: bool, first: tuple, total: int):
        self.update, self.stream, self.skip = svi.compiled.try_update, stream, skip
        self.batch_index = -1
        self.left = total  # batches still to read, the one in `pending` included
        self.pending: tuple | None = _to_device(first)
        self.all_losses: list[Array] = []
        self.last_args = first
        self.unclean = False  # a loss was not finite (without skip_nonfinite)

    def _prefetch(self) -> None:
        if self.pending is None and self.left > 0:
            try:
                self.pending = _to_device(next(self.stream))
            except StopIteration:
                self.left = 0

    def run(self, state: SVIState, done: int, length: int):
        del done
        losses, rejected, seen = [], [], []
        for _ in range(length):
            self._prefetch()
            if self.pending is None:
                break
            batch, self.pending = self.pending, None
            self.left -= 1
            self.batch_index += 1
            dynamic, spec = split_args(batch[0], batch[1], "svi_run")
            state, loss, rej, flags = self.update(state, dynamic, spec, self.skip)
            self._prefetch()  # the next batch, while this step runs
            if losses:
                losses[-1].block_until_ready()  # the step before: bounded queue
            seen.append((self.batch_index, flags))
            losses.append(loss)
            rejected.append(rej)
            self.last_args = batch
        for index, flags in seen:  # checked once per chunk: no wait per batch
            _raise_invalid_data(flags, state, None, index)
        # fetched as one list: stacking on the device would compile a program for
        # every new chunk length
        chunk_losses = np.asarray(jax.device_get(losses)).reshape(-1)
        chunk_rejected = np.asarray(jax.device_get(rejected), bool).reshape(-1)
        self.all_losses.append(chunk_losses)
        self.unclean = self.unclean or not np.all(np.isfinite(chunk_losses))
        return state, lambda: chunk_losses, lambda: chunk_rejected, len(losses)

    def losses(self, done: int) -> Array:
        del done
        if not any(len(chunk) for chunk in self.all_losses):
            return jnp.zeros((0,), jnp.result_type(float))
        return jnp.asarray(np.concatenate(self.all_losses))


def _raise_invalid_data(
    flags: dict[str, Array], state: SVIState, done: int | None, batch: int | None
) -> None:
    """Raise when a step saw observed values outside their site's support (those
    steps were rejected; retrying cannot help)."""
    bad = [name for name, ok in flags.items() if not bool(ok)]
    if not bad:
        return
    where = f"batch #{batch}" if batch is not None else f"the data (from step {done})"
    raise SupportError(
        f"svi_run: observed site {bad[0]!r} has values outside its support in "
        f"{where}; the step was rejected (state at step {int(state.step)}). "
        + (f"Other sites with invalid values: {bad[1:]}. " if len(bad) > 1 else "")
        + "Fix the data (e.g. labels of a Bernoulli must be 0 or 1), or pass "
        "validate_args=False to the distribution if the values are meant."
    )


def _make_bar(total: int):
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:
        return None
    return tqdm(total=total, desc="svi", unit="step", mininterval=0.2)


def _check_streak(
    streak: int,
    rejected: np.ndarray,
    max_nonfinite: int,
    svi: Any,
    state: SVIState,
    last_args: tuple,
) -> int:
    for flag in rejected:
        streak = streak + 1 if flag else 0
        if streak >= max_nonfinite:
            args, kwargs = last_args
            raise NonFiniteError(
                f"svi_run: {streak} consecutive steps had a non-finite loss or would "
                "have made the state non-finite "
                f"(at step {int(state.step)}). {nonfinite_report(svi, state, args, kwargs)} "
                "Check priors and data for values outside their support, lower the "
                "learning rate, or initialise parameters elsewhere."
            )
    return streak
