"""Counter-based randomness: every random number of the world is a hash of what it is for.

There is no generator state. A number is ``hash(seed, stream, index, variable name)`` mapped to
[0, 1), so it does not depend on which other numbers were drawn, in which order or in which
chunk: distractor ``i`` is the same image whichever batch renders it, and adding a variable to
the generator never changes the existing ones.

- :func:`splitmix64` mixes 64-bit integers (the output function of SplitMix64, Steele, Lea
  and Flood 2014);
- :func:`hash_key` folds several integers into one key, :func:`hash_uniform` expands a key into
  any number of uniforms;
- :func:`stream_keys` gives one key per item of a named stream (``"train"``, ``"lfw"``,
  ``"identity"``, ...), and :class:`Draws` draws named variables for a batch of such keys.

The few draws that follow a sequential ``numpy`` generator instead (the training roster, the suite
plans, the group mean faces) are documented where they happen.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.special import ndtri

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijective mixing of uint64 values (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_key(*parts: int | np.ndarray) -> np.ndarray:
    """Combine integers (or arrays of them, broadcast) into one uint64 key per element."""
    key = np.zeros((), dtype=np.uint64)
    for part in parts:
        with np.errstate(over="ignore"):
            key = splitmix64(key ^ np.asarray(part).astype(np.uint64))
    return np.atleast_1d(key)


def hash_uniform(keys: np.ndarray, n: int) -> np.ndarray:
    """``(len(keys), n)`` float64 uniforms in [0, 1): column ``j`` of row ``i`` depends on ``(keys[i], j)`` only."""
    keys = np.asarray(keys, dtype=np.uint64).reshape(-1, 1)
    slots = np.arange(n, dtype=np.uint64).reshape(1, -1)
    with np.errstate(over="ignore"):
        bits = splitmix64(keys ^ splitmix64(slots * _GOLDEN))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def name_code(name: str) -> int:
    """The integer that stands for a stream or variable name in a key (its CRC-32)."""
    return zlib.crc32(name.encode())


def stream_keys(seed: int, stream: str, index: np.ndarray) -> np.ndarray:
    """One uint64 key per index of a named stream (the training images, a suite's images, ...)."""
    return hash_key(np.uint64(seed), name_code(stream), np.asarray(index, dtype=np.uint64))


class Draws:
    """Named, independent random variables per row, from counter-based hashing of ``keys``.

    ``uniform(name)`` for row ``i`` depends only on ``(keys[i], name)``, so rows can be drawn in
    any order or chunk, and adding a new name never changes the existing ones."""

    def __init__(self, keys: np.ndarray):
        self.keys = np.asarray(keys, dtype=np.uint64)

    def uniform(self, name: str, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        u = hash_uniform(hash_key(self.keys, name_code(name)), 1)[:, 0]
        return low + (high - low) * u

    def normal(self, name: str) -> np.ndarray:
        """Standard normals (the inverse normal CDF of :meth:`uniform`)."""
        return ndtri(np.clip(self.uniform(name), 1e-12, 1.0 - 1e-12))
