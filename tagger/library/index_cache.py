"""A similarity index kept between commands: the library's embeddings already mapped into a
space, saved with the index version of the store they were read at.

Reading 100,000 embeddings and fitting the space cost ``similar`` and ``radio`` more than the
search (RESULTS.md); the store moves its index version on in every transaction that changes
which tracks are 'ok' or their embeddings (tagger.store.schema.INDEX_VERSION), so a saved index
of the same version holds exactly what would be read again. A SQLite library keeps it beside
the database file (``DB.similar-MODEL-SPACE``), a server's in the user cache folder (named
by a hash of the URL without its password). Saving is best effort: a folder tagger may not
write to means no cache, not an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class CachedIndex:
    track_ids: np.ndarray  # int64 [N]
    vectors: np.ndarray  # float32 [N, K], unit rows in the space
    mean: np.ndarray | None  # the space's parameters (tagger.library.similar.Space)
    proj: np.ndarray | None


def path_for(db: str, model_sha256: str, space: str) -> Path:
    """Where the index of ``db``'s tracks of a model, in ``space``, is kept."""
    name = f"similar-{model_sha256[:16]}-{space}"
    if "://" not in db:
        return Path(f"{Path(db).expanduser().absolute()}.{name}")
    import platformdirs

    key = hashlib.sha256(re.sub(r"//[^@/]*@", "//", db).encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("tagger")) / f"{key}.{name}"


MAGIC = b"tagger-similarity-index 1\n"
ALIGN = 64


def load(path: Path, version: str | None, model_id: int) -> CachedIndex | None:
    """The index saved at ``path`` if it is of ``version`` and ``model_id``, else None. Its
    arrays are mapped from the file, not read: the search touches each vector once anyway."""
    if version is None:
        return None
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            size = int.from_bytes(f.read(8), "little")
            head = json.loads(f.read(size))
        if head["version"] != version or head["model_id"] != model_id:
            return None
        arrays = {}
        for name, dtype, shape, offset in head["arrays"]:
            arrays[name] = (np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))
                            if np.prod(shape) else None)
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or not one of ours: read the store
        return None
    ids, vectors = arrays.get("track_ids"), arrays.get("vectors")
    if ids is None or vectors is None or vectors.ndim != 2 or len(vectors) != len(ids):
        return None
    return CachedIndex(np.asarray(ids), vectors, arrays.get("mean"), arrays.get("proj"))


def save(path: Path, version: str | None, model_id: int, index: CachedIndex) -> None:
    """Keep ``index`` (read at ``version``) at ``path``: one file, written whole to a temporary
    name and renamed, so a reader maps the old one or the new one."""
    if version is None:
        return
    parts = [("track_ids", np.ascontiguousarray(index.track_ids, dtype="<i8")),
             ("vectors", np.ascontiguousarray(index.vectors, dtype="<f4"))]
    parts += [(name, np.ascontiguousarray(a, dtype="<f4")) for name, a in (("mean", index.mean), ("proj", index.proj))
              if a is not None]
    head = {"version": version, "model_id": model_id, "arrays": []}
    offset = 0
    for _ in range(2):  # the header's length moves the arrays' offsets: settle them
        body = _aligned(len(MAGIC) + 8 + len(json.dumps(head).encode()) + 64)
        head["arrays"], offset = [], body
        for name, a in parts:
            head["arrays"].append([name, a.dtype.str, list(a.shape), offset])
            offset = _aligned(offset + a.nbytes)
    encoded = json.dumps(head).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + len(encoded).to_bytes(8, "little") + encoded)
                for (_, a), (_, _, _, at) in zip(parts, head["arrays"]):
                    f.write(b"\0" * (at - f.tell()))
                    f.write(memoryview(a).cast("B"))  # (no copy of 100 MB first)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # a read-only folder, a full disk: the next search reads the store again


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN
