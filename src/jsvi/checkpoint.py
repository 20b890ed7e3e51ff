"""Checkpoints of an ``SVIState`` (or any pytree of arrays): atomic, pickle-free,
bit-exact.

A checkpoint is one ``.npz``-format file (a zip of ``.npy`` arrays, whatever its
extension) holding every leaf of the state plus a JSON header that records the
state's structure: each leaf's path, shape and dtype, which leaves are PRNG keys
(stored as their raw key data and impl name), and, for an ``SVIState``, each
parameter's constraint. Loading reads it with ``allow_pickle=False``, so a file
can never run code; it checks the header against ``like`` (paths, shapes, dtypes,
constraints), checks the size of every stored array in the zip directory before
reading it, checks every array against its header entry, and turns any
corruption into a ``CheckpointError``.

Writes go to a temporary file in the same folder, are flushed to disk, then renamed
over the target: a crash mid-write leaves the previous checkpoint intact.

May import: ``jsvi.state``, ``jsvi._typing``, ``jsvi.errors``.
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
from jsvi.state import ParamConstraints

__all__ = ["load_state", "save_state"]

_FORMAT = "jsvi-checkpoint-v2"
_MAX_HEADER_BYTES = 64 * 2**20  # a header describes leaves, it is never this large


def _describe_skeleton(skeleton: Any) -> Any:
    """A JSON-able description of a constraint's static structure."""
    kind = skeleton[0]
    if kind == "leaf":
        return "<array>"
    if kind == "value":
        return repr(skeleton[1])
    _, cls, fields = skeleton
    return [f"{cls.__module__}.{cls.__qualname__}", [[n, _describe_skeleton(f)] for n, f in fields]]


def _constraints_of(state: PyTree) -> dict[str, Any] | None:
    record = getattr(state, "param_constraints", None)
    if not isinstance(record, ParamConstraints):
        return None
    return {
        name: {"repr": repr(c), "structure": _describe_skeleton(skeleton)}
        for (name, c), (_, skeleton) in zip(
            record.as_dict().items(), record.tree_flatten()[1]
        )
    }


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _describe(
    state: PyTree, where: str, with_data: bool = True
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Each leaf's header entry and (``with_data``) its values on the host.

    Without ``with_data`` only shapes and dtypes are read, so describing ``like``
    fetches nothing from the devices.
    """
    leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(state)
    entries, arrays = [], []
    for path, leaf in leaves_with_paths:
        key = _is_key(leaf)
        if with_data and isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            raise CheckpointError(
                f"{where}: leaf {jax.tree_util.keystr(path)} is an array spread across "
                f"processes ({leaf.sharding}); one file on one host cannot hold it "
                "without gathering it first. Checkpoint sharded multi-process states "
                "with orbax (see docs/checkpoints.md), or gather the state with "
                "jax.experimental.multihost_utils.process_allgather(state, tiled=True) "
                "and save from process 0."
            )
        if key:
            impl = str(jax.random.key_impl(leaf))
            data = jax.random.key_data(leaf) if with_data else jax.eval_shape(
                jax.random.key_data, leaf
            )
        else:
            impl, data = None, leaf
        if with_data or not (hasattr(data, "shape") and hasattr(data, "dtype")):
            data = np.asarray(data)
        entries.append(
            {
                "path": jax.tree_util.keystr(path),
                "shape": list(data.shape),
                "dtype": np.dtype(data.dtype).str,
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
        CheckpointError: the file cannot be written, or a leaf is an array spread
            across processes (use orbax for those: ``docs/checkpoints.md``).

    Example:
        >>> import os, tempfile, jax.numpy as jnp, jsvi
        >>> path = os.path.join(tempfile.mkdtemp(), "state.ckpt")
        >>> jsvi.save_state(path, {"w": jnp.arange(3.0)})
        >>> jsvi.load_state(path, like={"w": jnp.zeros(3)})["w"].tolist()
        [0.0, 1.0, 2.0]
    """
    path = pathlib.Path(path)
    entries, arrays = _describe(state, f"save_state({str(path)!r})")
    header = json.dumps(
        {"format": _FORMAT, "leaves": entries, "constraints": _constraints_of(state)}
    )
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
            the same model, guide and data shapes); its structure, shapes and dtypes
            are checked, its values are never read. Leaves of ``like`` that span
            several devices of this host (sharded or replicated) are restored with
            the same sharding; the others land on the default device.

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
    expected, _ = _describe(like, where, with_data=False)
    try:
        header, arrays = _read(path, where, expected)
    except CheckpointError:
        raise
    except Exception as e:  # any other failure to read is a corrupted file
        raise CheckpointError(
            f"{where}: the file is truncated or corrupted ({type(e).__name__}: {e}). "
            "Resume from an earlier checkpoint or start over."
        ) from e
    _compare_constraints(where, header.get("constraints"), _constraints_of(like))
    leaves = []
    for entry, array, mould in zip(header["leaves"], arrays, jax.tree.leaves(like)):
        # a leaf of `like` over several devices (sharded or replicated) is placed
        # the same way; any other goes to the default device, uncommitted
        sharding = None
        if isinstance(mould, jax.Array) and len(mould.sharding.device_set) > 1:
            sharding = mould.sharding
        if entry["key_impl"] is not None:
            value = jax.random.wrap_key_data(jnp.asarray(array), impl=entry["key_impl"])
            leaves.append(value if sharding is None else jax.device_put(value, sharding))
        else:
            leaves.append(
                jnp.asarray(array) if sharding is None else jax.device_put(array, sharding)
            )
    treedef = jax.tree.structure(like)
    state = jax.tree.unflatten(treedef, leaves)
    mine = getattr(like, "param_constraints", None)
    if isinstance(mine, ParamConstraints) and state.param_constraints != mine:
        raise CheckpointError(
            f"{where}: the checkpoint's constraint bounds "
            f"{state.param_constraints.as_dict()!r} differ from `like`'s "
            f"{mine.as_dict()!r}. Load it with the SVI it was written for."
        )
    return state


def _read(path: pathlib.Path, where: str, expected: list[dict]) -> tuple[dict, list]:
    """The header and arrays of a checkpoint, each checked before it is used."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        info = members.get("__header__.npy")
        if info is None or info.file_size > _MAX_HEADER_BYTES:
            raise CheckpointError(f"{where}: not a jsvi checkpoint (no header).")
        with archive.open(info) as f:
            raw = np.lib.format.read_array(f, allow_pickle=False)
        header = json.loads(bytes(np.asarray(raw, np.uint8)).decode())
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            found = header.get("format") if isinstance(header, dict) else None
            raise CheckpointError(
                f"{where}: not a jsvi checkpoint of this version (format {found!r}, "
                f"expected {_FORMAT!r})."
            )
        stored = header.get("leaves")
        if not isinstance(stored, list) or not all(isinstance(e, dict) for e in stored):
            raise CheckpointError(f"{where}: the header's list of leaves is malformed.")
        _compare(where, stored, expected)
        arrays = []
        for i, entry in enumerate(stored):
            name = f"leaf_{i}.npy"
            member = members.get(name)
            if member is None:
                raise CheckpointError(f"{where}: leaf {entry['path']} is missing.")
            dtype = np.dtype(entry["dtype"])
            size = int(np.prod(entry["shape"], dtype=np.int64)) * dtype.itemsize
            if member.file_size > size + 4096:  # .npy's own header is < 4 KiB
                raise CheckpointError(
                    f"{where}: leaf {entry['path']} holds {member.file_size} bytes, "
                    f"but its header says {tuple(entry['shape'])} of {dtype}. The file "
                    "is corrupted."
                )
            with archive.open(member) as f:
                array = np.lib.format.read_array(f, allow_pickle=False)
            if array.shape != tuple(entry["shape"]) or array.dtype != dtype:
                raise CheckpointError(
                    f"{where}: leaf {entry['path']} is stored as {array.shape} of "
                    f"{array.dtype}, but its header says {tuple(entry['shape'])} of "
                    f"{dtype}. The file is corrupted."
                )
            arrays.append(array)
    return header, arrays


_OLD_CLASS_PREFIX = "jsvi.constraints._"


def _current_names(structure: Any) -> Any:
    """A stored constraint structure with the class names constraints have now.

    Files written before the constraint classes became public record
    ``jsvi.constraints._Real`` where a file written now records
    ``jsvi.constraints.Real``; both describe the same constraint.
    """
    if isinstance(structure, list):
        return [_current_names(s) for s in structure]
    if isinstance(structure, str) and structure.startswith(_OLD_CLASS_PREFIX):
        rest = structure[len(_OLD_CLASS_PREFIX) :]
        if rest[:1].isupper():
            return "jsvi.constraints." + rest
    return structure


def _compare_constraints(where: str, stored: Any, expected: Any) -> None:
    if expected is None:
        return
    if not isinstance(stored, dict):
        raise CheckpointError(
            f"{where}: the checkpoint records no parameter constraints, but `like` is "
            "an SVIState. Load it with a matching `like`."
        )
    for name, want in expected.items():
        got = stored.get(name)
        if not isinstance(got, dict) or _current_names(got.get("structure")) != want["structure"]:
            found = got.get("repr") if isinstance(got, dict) else None
            raise CheckpointError(
                f"{where}: param {name!r} has constraint {found} in the checkpoint, but "
                f"{want['repr']} in `like`. Its stored unconstrained value would be read "
                "through the wrong transform; load it with the SVI it was written for."
            )


def _compare(where: str, stored: list[dict], expected: list[dict]) -> None:
    stored_paths = [e.get("path") for e in stored]
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
