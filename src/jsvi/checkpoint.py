"""Checkpoints of an ``SVIState`` (or any pytree of arrays): atomic, pickle-free,
bit-exact.

A checkpoint is one ``.npz``-format file (a zip of ``.npy`` arrays, whatever its
extension) holding every leaf of the state plus a JSON header that records the
state's structure: each leaf's path, shape and dtype, and which leaves are PRNG keys
(stored as their raw key data and impl name). Loading reads it with
``allow_pickle=False``, so a file can never run code, and checks it against the
structure of a ``like`` state before anything is returned.

Writes go to a temporary file in the same folder, are flushed to disk, then renamed
over the target: a crash mid-write leaves the previous checkpoint intact.

May import: ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import PyTree
from jsvi.errors import CheckpointError

__all__ = ["load_state", "save_state"]

_FORMAT = "jsvi-checkpoint-v1"


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _describe(state: PyTree) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(state)
    entries, arrays = [], []
    for path, leaf in leaves_with_paths:
        key = _is_key(leaf)
        if key:
            data = np.asarray(jax.random.key_data(leaf))
            impl = str(jax.random.key_impl(leaf))
        else:
            data = np.asarray(leaf)
            impl = None
        entries.append(
            {
                "path": jax.tree_util.keystr(path),
                "shape": list(data.shape),
                "dtype": data.dtype.str,
                "key_impl": impl,
            }
        )
        arrays.append(data)
    return entries, arrays


def save_state(path: str | os.PathLike[str], state: PyTree) -> None:
    """Write ``state`` to ``path`` atomically (write, flush, fsync, rename).

    Args:
        path: the checkpoint file, written exactly there (any extension). Its
            folder must exist.
        state: an ``SVIState`` or any pytree of arrays (PRNG keys included).

    Raises:
        CheckpointError: the file cannot be written.

    Example:
        >>> import os, tempfile, jax.numpy as jnp, jsvi
        >>> path = os.path.join(tempfile.mkdtemp(), "state.ckpt")
        >>> jsvi.save_state(path, {"w": jnp.arange(3.0)})
        >>> jsvi.load_state(path, like={"w": jnp.zeros(3)})["w"].tolist()
        [0.0, 1.0, 2.0]
    """
    path = pathlib.Path(path)
    entries, arrays = _describe(state)
    header = json.dumps({"format": _FORMAT, "leaves": entries})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                __header__=np.frombuffer(header.encode(), dtype=np.uint8),
                **{f"leaf_{i}": a for i, a in enumerate(arrays)},
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise CheckpointError(f"save_state: could not write {str(path)!r}: {e}.") from e
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_state(path: str | os.PathLike[str], like: PyTree) -> PyTree:
    """Read a checkpoint written by ``save_state`` into the structure of ``like``.

    Args:
        path: the checkpoint file.
        like: a state with the expected structure (e.g. ``svi_init``'s result for
            the same model, guide and data shapes); only its structure, shapes and
            dtypes are used.

    Returns:
        A state like ``like`` with the checkpoint's values, bit for bit.

    Raises:
        CheckpointError: the file is missing, truncated or corrupted, is not a jsvi
            checkpoint, or holds a different structure (other parameter names,
            shapes or dtypes: another model's state).
    """
    path = pathlib.Path(path)
    where = f"load_state({str(path)!r})"
    if not path.exists():
        raise CheckpointError(f"{where}: no such file. Check the path.")
    try:
        with open(path, "rb") as f:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with npz:
                header = json.loads(bytes(npz["__header__"]).decode())
                if header.get("format") != _FORMAT:
                    raise CheckpointError(
                        f"{where}: not a jsvi checkpoint (format "
                        f"{header.get('format')!r})."
                    )
                stored = header["leaves"]
                arrays = [npz[f"leaf_{i}"] for i in range(len(stored))]
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, AttributeError, TypeError) as e:
        raise CheckpointError(
            f"{where}: the file is truncated or corrupted ({type(e).__name__}: {e}). "
            "Resume from an earlier checkpoint or start over."
        ) from e
    expected, _ = _describe(like)
    _compare(where, stored, expected)
    leaves = []
    for entry, array in zip(stored, arrays):
        if entry["key_impl"] is not None:
            leaves.append(jax.random.wrap_key_data(jnp.asarray(array), impl=entry["key_impl"]))
        else:
            leaves.append(jnp.asarray(array))
    treedef = jax.tree.structure(like)
    return jax.tree.unflatten(treedef, leaves)


def _compare(where: str, stored: list[dict], expected: list[dict]) -> None:
    stored_paths = [e["path"] for e in stored]
    expected_paths = [e["path"] for e in expected]
    if stored_paths != expected_paths:
        missing = sorted(set(expected_paths) - set(stored_paths))
        extra = sorted(set(stored_paths) - set(expected_paths))
        raise CheckpointError(
            f"{where}: the checkpoint holds a different state structure (missing: "
            f"{missing[:5]}, unexpected: {extra[:5]}). It was written for another "
            "model, guide, optimizer or estimator; load it with a matching `like`."
        )
    for s, e in zip(stored, expected):
        if s["shape"] != e["shape"] or s["dtype"] != e["dtype"] or s["key_impl"] != e["key_impl"]:
            raise CheckpointError(
                f"{where}: leaf {s['path']} has shape {tuple(s['shape'])} and dtype "
                f"{s['dtype']} in the checkpoint, but {tuple(e['shape'])} and "
                f"{e['dtype']} in `like`. The checkpoint belongs to a model with "
                "other shapes."
            )
