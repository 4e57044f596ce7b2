"""Canonical bytes and content hashes of model state (what certificates pin)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping

import numpy as np


def state_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over (name, dtype, shape, C-order bytes) of each array, names sorted.

    Hashing content rather than a file makes the digest independent of the container format."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def dump_state(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Arrays to .npz bytes (no pickle, so loading cannot execute code)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def load_state(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
