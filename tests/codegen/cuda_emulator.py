"""Run generated CUDA on the CPU: a test double for machines without a GPU.

The module's text is compiled unchanged as C++ with a header that maps CUDA's
names onto host code: a launch runs a block at a time with one OS thread per
CUDA thread, `__syncthreads` is a barrier, `__shared__` is static storage
(one block runs at a time) and a warp shuffle is an exchange through memory
between two barriers. That is enough for the kernels netdsl generates, whose
barriers and shuffles are reached by every thread of a block, and it checks
what compiling alone cannot: index arithmetic, grid-stride loops, block
reductions, and the tiled matrix product's edge guards and vector paths.
It says nothing about speed, and a kernel relying on warp-synchronous
behaviour without barriers would not be caught.
"""
from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np

from netdsl.runtime.cbuild import bind

HEADER = r"""
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <thread>
#include <vector>

struct netdsl_dim3 { unsigned x, y, z; };
static thread_local netdsl_dim3 threadIdx, blockIdx;
static netdsl_dim3 blockDim, gridDim;
static std::barrier<> *netdsl_block_barrier;
static float netdsl_exchange[1024];

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(threads)
#define __restrict__ __restrict
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct alignas(16) float4 { float x, y, z, w; };
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

static inline void __syncthreads()
{
    if (netdsl_block_barrier == nullptr) {  /* a kernel declared barrier-free used one */
        fprintf(stderr, "emulator: __syncthreads in a kernel run one thread at a time\n");
        abort();
    }
    netdsl_block_barrier->arrive_and_wait();
}

static inline float __shfl_xor_sync(unsigned, float v, int lane_mask)
{
    const unsigned me = threadIdx.x;
    netdsl_exchange[me] = v;
    __syncthreads();
    const float other = netdsl_exchange[me ^ (unsigned)lane_mask];
    __syncthreads();
    return other;
}

/* Runs `thunk` as every thread of every block, blocks in order; each OS thread
   walks the blocks itself and a barrier separates them, so __shared__ storage
   is never used by two blocks at once. A kernel without barriers or shuffles
   (`sequential`) runs its threads one after another on the calling thread:
   the same work, without an OS thread per CUDA thread. */
extern "C" void netdsl_launch(const unsigned grid[3], const unsigned block[3], void (*thunk)(void), int sequential)
{
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    const unsigned threads = block[0] * block[1] * block[2];
    if (sequential) {
        netdsl_block_barrier = nullptr;
        for (unsigned z = 0; z < grid[2]; ++z)
            for (unsigned y = 0; y < grid[1]; ++y)
                for (unsigned x = 0; x < grid[0]; ++x)
                    for (unsigned t = 0; t < threads; ++t) {
                        blockIdx = {x, y, z};
                        threadIdx = {t % block[0], (t / block[0]) % block[1], t / (block[0] * block[1])};
                        thunk();
                    }
        return;
    }
    std::barrier<> barrier(threads);
    netdsl_block_barrier = &barrier;
    std::vector<std::thread> team;
    for (unsigned t = 0; t < threads; ++t) {
        team.emplace_back([=, &barrier] {
            threadIdx = {t % block[0], (t / block[0]) % block[1], t / (block[0] * block[1])};
            for (unsigned z = 0; z < grid[2]; ++z)
                for (unsigned y = 0; y < grid[1]; ++y)
                    for (unsigned x = 0; x < grid[0]; ++x) {
                        blockIdx = {x, y, z};
                        thunk();
                        barrier.arrive_and_wait();
                    }
        });
    }
    for (auto &thread : team)
        thread.join();
}
"""

THUNK = ctypes.CFUNCTYPE(None)


class Emulator:
    """Generated CUDA compiled for the host; `launch` runs one kernel of a plan."""

    def __init__(self, source: str, folder: Path):
        compiler = shutil.which("g++")
        if compiler is None:
            raise RuntimeError("no C++ compiler (g++) to emulate CUDA with")
        digest = hashlib.sha256((HEADER + source).encode()).hexdigest()[:16]
        library = folder / f"emulated-{digest}.so"
        if not library.exists():
            (folder / "emulation.h").write_text(HEADER)
            (folder / "kernels.cpp").write_text(source)
            command = [compiler, "-std=c++20", "-O1", "-fno-strict-aliasing", "-shared", "-fPIC", "-pthread",
                       "-include", str(folder / "emulation.h"), str(folder / "kernels.cpp"), "-o", str(library)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)}\n{result.stderr[-4000:]}")
        self.library = ctypes.CDLL(str(library))
        self.library.netdsl_launch.argtypes = [ctypes.c_uint * 3, ctypes.c_uint * 3, THUNK, ctypes.c_int]

    def launch(self, kernel, buffers: dict[str, np.ndarray], scalars: dict | None = None) -> None:
        function, values = bind(self.library, kernel, buffers, scalars)
        thunk = THUNK(lambda: function(*values))
        grid = (ctypes.c_uint * 3)(*kernel.launch.grid)
        block = (ctypes.c_uint * 3)(*kernel.launch.block)
        # flat kernels (a thread per element, grid-stride) have no barriers or shuffles
        self.library.netdsl_launch(grid, block, thunk, int(kernel.shape == "flat"))
