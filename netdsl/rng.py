"""Counter-based random numbers that numpy, generated C and generated CUDA agree on.

Every random number in netdsl (parameter initialisation, dropout masks) is a pure
function of (key, counter), so any backend, thread or device can compute any
element on its own, in any order, and get the same bits. The generator is
Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy
as 1, 2, 3", SC'11), exactly as in the Random123 reference: 10 rounds,
multipliers M0=0xD2511F53, M1=0xCD9E8D57, Weyl key increments W0=0x9E3779B9,
W1=0xBB67AE85. `templates/_philox.j2` is the C/CUDA twin of this module.

Keys (`stream_key`)
    A stream is named by a stable string, e.g. "fc6.dropout@gpu0" or
    "conv1.conv@gpu0.weight", and a run seed, an integer in [0, 2**64):

        h     = FNV-1a-64(seed as 8 bytes little-endian  ||  UTF-8 bytes of name)
                (offset basis 0xCBF29CE484222325, prime 0x100000001B3)
        key64 = mix64(h), the splitmix64 finaliser, all arithmetic mod 2**64:
                z ^= z >> 30; z *= 0xBF58476D1CE4E5B9
                z ^= z >> 27; z *= 0x94D049BB133111EB
                z ^= z >> 31
        key   = (k0, k1) = (key64 & 0xFFFFFFFF, key64 >> 32)

    The finaliser spreads the one-character differences between layer names
    over all 64 key bits. Keys are derived in Python only; C and CUDA kernels
    receive k0 and k1 as two uint32 arguments.

Counter layout (`uniform`, `bernoulli_keep`; identical in C and CUDA)
    Element i (uint64) of draw `step` (uint64, e.g. the training iteration) is
    word i % 4 of the block

        philox4x32(counter = (b & 0xFFFFFFFF, step & 0xFFFFFFFF, step >> 32, b >> 32),
                   key = (k0, k1)),       where b = i // 4.

    The last word is 0 for any i < 2**34. Functions take (n, start) and return
    elements start .. start+n-1, so a tensor's mask does not depend on how it
    is chunked across calls, threads or devices.

Conversions
    uniform:  u -> float32((u >> 8) * 2**-24), in [0, 1). The 24-bit integer and
              the power-of-two scale are exact in float32, so C and CUDA give
              the same bits as numpy.
    keep:     uniform < float32(keep_prob). keep_prob is rounded to float32
              first because kernels receive it as a float. This is the only
              function backends must reproduce bit-exactly (dropout masks).
    normal:   Box-Muller in float64 on consecutive words (2j, 2j+1) of the same
              layout, each word mapped to (u + 0.5) * 2**-32 in (0, 1) so the
              logarithm is finite. For initialisation only; numpy is its sole
              implementation.
"""

from __future__ import annotations

import numpy as np

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10

FNV64_OFFSET_BASIS = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
_WORDS_PER_BLOCK = 4

Key = tuple[np.uint32, np.uint32]


def philox4x32(counter, key) -> np.ndarray:
    """Philox4x32-10 block function over every counter in `counter` (shape (..., 4)).

    `key` is (2,) or broadcastable (..., 2). Works in uint64 so that each 32x32
    multiply yields its high and low halves exactly.
    """
    counter = np.asarray(counter, dtype=np.uint32)
    key = np.asarray(key, dtype=np.uint32)
    if counter.shape[-1:] != (4,) or key.shape[-1:] != (2,):
        raise ValueError(f"counter must end in 4 words and key in 2, got {counter.shape} and {key.shape}")
    x0, x1, x2, x3 = (counter[..., w].astype(np.uint64) for w in range(4))
    k0 = key[..., 0].astype(np.uint64)
    k1 = key[..., 1].astype(np.uint64)
    m0, m1, mask = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1), np.uint64(_MASK32)
    shift = np.uint64(32)
    for r in range(PHILOX_ROUNDS):
        # Round r uses the key bumped r times (Random123 bumps between rounds).
        r0 = (k0 + np.uint64(r * PHILOX_W0)) & mask
        r1 = (k1 + np.uint64(r * PHILOX_W1)) & mask
        p0 = x0 * m0
        p1 = x2 * m1
        x0, x1, x2, x3 = (p1 >> shift) ^ x1 ^ r0, p1 & mask, (p0 >> shift) ^ x3 ^ r1, p0 & mask
    return np.stack(np.broadcast_arrays(x0, x1, x2, x3), axis=-1).astype(np.uint32)


def stream_key(seed: int, stream: str) -> Key:
    """Key (k0, k1) of the named stream under the run seed; see the module docstring."""
    if not 0 <= seed <= _MASK64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed}")
    key64 = mix64(fnv1a64(seed.to_bytes(8, "little") + stream.encode("utf-8")))
    return np.uint32(key64 & _MASK32), np.uint32(key64 >> 32)


def fnv1a64(data: bytes) -> int:
    """64-bit FNV-1a hash: stable across processes and Python versions, unlike hash()."""
    h = FNV64_OFFSET_BASIS
    for byte in data:
        h = ((h ^ byte) * FNV64_PRIME) & _MASK64
    return h


def mix64(z: int) -> int:
    """The splitmix64 output finaliser: every input bit flips about half the output bits."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def random_words(key, step: int, n: int, start: int = 0) -> np.ndarray:
    """Elements start .. start+n-1 of draw `step` as uint32: element i is word i % 4 of block i // 4."""
    if not 0 <= step <= _MASK64:
        raise ValueError(f"step must be an integer in [0, 2**64), got {step}")
    if n < 0 or start < 0 or start + n > 2**64:
        raise ValueError(f"elements [{start}, {start + n}) do not lie in [0, 2**64)")
    first_block = start // _WORDS_PER_BLOCK
    end_block = -(-(start + n) // _WORDS_PER_BLOCK)
    # Python ints: first_block may exceed the int64 range np.arange works in.
    blocks = np.uint64(first_block) + np.arange(end_block - first_block, dtype=np.uint64)
    counter = np.empty((blocks.size, 4), dtype=np.uint32)
    counter[:, 0] = blocks & np.uint64(_MASK32)
    counter[:, 1] = step & _MASK32
    counter[:, 2] = step >> 32
    counter[:, 3] = blocks >> np.uint64(32)
    skip = start - first_block * _WORDS_PER_BLOCK
    return philox4x32(counter, key).reshape(-1)[skip : skip + n]


def uniform(key, step: int, n: int, start: int = 0) -> np.ndarray:
    """Elements start .. start+n-1 as float32 in [0, 1) on the 2**-24 grid; C/CUDA: netdsl_uniform."""
    top24 = random_words(key, step, n, start) >> np.uint32(8)
    return top24.astype(np.float32) * np.float32(2.0**-24)


def bernoulli_keep(key, step: int, n: int, keep_prob: float, start: int = 0) -> np.ndarray:
    """Dropout keep mask, uniform < float32(keep_prob); C/CUDA: netdsl_keep, bit for bit."""
    if not 0.0 <= keep_prob <= 1.0:
        raise ValueError(f"keep_prob must lie in [0, 1], got {keep_prob}")
    return uniform(key, step, n, start) < np.float32(keep_prob)


def normal(key, step: int, n: int) -> np.ndarray:
    """n standard normal float32 values (Box-Muller in float64); for initialisation only."""
    words = random_words(key, step, n + n % 2).astype(np.float64)
    open_unit = (words + 0.5) * 2.0**-32  # (0, 1): log never sees 0
    radius = np.sqrt(-2.0 * np.log(open_unit[0::2]))
    angle = 2.0 * np.pi * open_unit[1::2]
    pairs = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    return pairs.reshape(-1)[:n].astype(np.float32)
