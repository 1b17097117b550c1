"""Deterministic randomness as a pure function of (seed, stream, index).

Every random number of the simulator comes from here, so a series is a function of
the seed and the time alone: the history written by ``--backfill`` and the readings
published live agree, and two runs with the same seed produce the same values.
Counter-based hashing (splitmix64) gives uniforms and normals for any integer index
without keeping generator state.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO53 = 1.0 / float(1 << 53)


def stream_key(seed: int, *parts: object) -> int:
    """A 64-bit key for a named stream of a seed (stable across runs and platforms)."""
    text = "\x1f".join([str(seed), *map(str, parts)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def uniform(key: int, idx: npt.ArrayLike) -> F:
    """Uniforms in [0, 1), one per index."""
    i = np.asarray(idx, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = _mix(i * np.uint64(0xD1B54A32D192ED03) + np.uint64(key))
    return (z >> np.uint64(11)).astype(np.float64) * _TWO53


def normal(key: int, idx: npt.ArrayLike) -> F:
    """Standard normals, one per index (Box–Muller on two hashed uniforms)."""
    i = np.asarray(idx, dtype=np.int64)
    u1 = uniform(key, 2 * i)
    u2 = uniform(key, 2 * i + 1)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * math.pi * u2)


def ar1_hourly(key: int, times: F, tau_hours: float) -> F:
    """A stationary AR(1) process of unit variance on the hourly grid (correlation time
    ``tau_hours``), linearly interpolated at ``times`` (epoch seconds).  The process is
    started ``6 * tau`` hours before the first time, so the value at a time hardly
    depends on the window asked for (less than 0.3 % of the variance)."""
    if len(times) == 0:
        return np.zeros(0)
    h0 = math.floor(float(times.min()) / 3600.0)
    h1 = math.floor(float(times.max()) / 3600.0) + 1
    warm = int(6 * tau_hours) + 2
    hours = np.arange(h0 - warm, h1 + 1, dtype=np.int64)
    e = normal(key, hours)
    phi = math.exp(-1.0 / tau_hours)
    g = math.sqrt(1.0 - phi * phi)
    x = np.empty_like(e)
    acc = e[0]
    for n in range(len(e)):  # a few hundred steps per call
        acc = phi * acc + g * e[n] if n else acc
        x[n] = acc
    return np.interp(times / 3600.0, hours.astype(np.float64), x)


def white(key: int, times: F) -> F:
    """Independent normals per whole second of ``times``."""
    return normal(key, np.floor(times).astype(np.int64))
