"""Model weights on disk: an ``nnx`` state saved and restored with orbax-checkpoint
(``StandardCheckpointer``), as the flax guides do.

Atomicity: orbax writes a checkpoint into a temporary folder beside the target
(``NAME.orbax-checkpoint-tmp-*``) and renames it into place when every file is written, so a
folder at the checkpoint's path is a finished checkpoint; an interrupted save leaves only the
temporary folder, which nothing here reads (:func:`checkpoint_files` refuses a path without
orbax's metadata file). orbax is imported when first needed: it takes about 2 s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# orbax writes this last-but-one file inside every checkpoint it finalises; a folder without it
# is not one of orbax's checkpoints (a typo, or some other folder).
_METADATA = "_CHECKPOINT_METADATA"


def save_state(path: str | os.PathLike, state: Any) -> None:
    """Save ``state`` (an ``nnx.State`` or any pytree of arrays) as an orbax checkpoint folder at
    ``path``, replacing one that is there; the folder appears only once it is complete."""
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, state, force=True)


def restore_state(path: str | os.PathLike, abstract_state: Any) -> Any:
    """The state saved at ``path``, restored into the structure, shapes and dtypes of
    ``abstract_state`` (e.g. ``nnx.split(nnx.eval_shape(build))[1]``: no weights drawn first).
    Raises ``ValueError`` when the path is no checkpoint or does not fit the structure."""
    import orbax.checkpoint as ocp

    checkpoint_files(path)  # says clearly when the path is no checkpoint
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            return checkpointer.restore(Path(path).absolute(), abstract_state)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"checkpoint {path} does not fit the model's architecture: {error}") from None


def checkpoint_files(path: str | os.PathLike) -> list[Path]:
    """Every file of the checkpoint folder at ``path``, sorted: what determines the weights (the
    extraction cache's key hashes them). Raises ``ValueError`` when ``path`` is no finished
    orbax checkpoint."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"checkpoint {path} does not exist (train it first, or fix the path)")
    if not (path / _METADATA).is_file():
        raise ValueError(f"{path} is not a finished orbax checkpoint (no {_METADATA})")
    return sorted(p for p in path.rglob("*") if p.is_file())


__all__ = ["checkpoint_files", "restore_state", "save_state"]
