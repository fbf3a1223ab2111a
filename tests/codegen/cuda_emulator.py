"""Run generated CUDA on the CPU: a test double for machines without a GPU.

The module's text is compiled unchanged as C++ with a header that maps CUDA's
names onto host code: a launch runs a block at a time, its CUDA threads as
coroutines on one OS thread, `__syncthreads` hands over to the next thread
(so all reach it before any passes), `__shared__` is static storage
(one block runs at a time) and a warp shuffle is an exchange through memory
between two barriers. That is enough for the kernels netdsl generates, whose
barriers and shuffles are reached by every thread of a block, and it checks
what compiling alone cannot: index arithmetic, grid-stride loops, block
reductions, and the tiled matrix product's edge guards and vector paths.
Tensor-core and cp.async instructions, which the templates keep behind
small functions (templates/_mma_ptx.j2), are replaced by C++ twins written
from their PTX semantics (emulated_ptx.h): warp-collective mma.sync with the
documented fragment layouts, TF32 / BF16 rounding, and deferred,
poison-on-issue asynchronous copies.
It says nothing about speed, and a kernel relying on warp-synchronous
behaviour without barriers would not be caught. Built with NETDSL_REVERSED,
blocks and threads run last to first, so a race between two threads of one
barrier interval or two blocks changes the numbers; `poisoned` memory stands
for a fresh device allocation, which is garbage, not zeros.
"""
from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from netdsl.runtime.cbuild import bind

HEADER = r"""
#define NETDSL_EMULATED 1
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <ucontext.h>
#include <vector>

struct netdsl_dim3 { unsigned x, y, z; };
static netdsl_dim3 threadIdx, blockIdx, blockDim, gridDim;
static float netdsl_exchange[1024];

/* A block's threads are coroutines on the calling OS thread: each runs until
   it reaches __syncthreads, then hands over to the next; when the last one
   arrives the first goes on, so every thread has passed the barrier's before
   any passes it. A barrier costs a context switch, not an OS thread wake-up. */
static bool netdsl_cooperative;  /* false: threads run one after another, barriers forbidden */
static unsigned netdsl_threads, netdsl_current, netdsl_finished;
static ucontext_t netdsl_host, netdsl_team[1024];
static std::vector<char> netdsl_stacks;
static void (*netdsl_body)(void **);
static void **netdsl_arguments;
static const size_t NETDSL_STACK = 64 * 1024;
static void netdsl_thread_done();  /* emulated_ptx.h: no asynchronous copy outlives its thread */
static void netdsl_block_start();

/* The order threads and blocks take turns in. A GPU promises none, so a kernel whose
   result depends on it (two threads of one barrier interval, or two blocks, writing
   one element, or one reading what another writes) has a race: built with
   NETDSL_REVERSED, blocks and threads run last to first, and such a kernel's numbers
   change. */
#ifdef NETDSL_REVERSED
static inline unsigned netdsl_turn(unsigned i, unsigned n) { return n - 1 - i; }
#else
static inline unsigned netdsl_turn(unsigned i, unsigned) { return i; }
#endif

static inline unsigned netdsl_next(unsigned t)
{
    return netdsl_turn((netdsl_turn(t, netdsl_threads) + 1) % netdsl_threads, netdsl_threads);
}

static inline netdsl_dim3 netdsl_index(unsigned t)
{
    return {t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
}

static void netdsl_switch(unsigned next)
{
    const unsigned previous = netdsl_current;
    netdsl_current = next;
    threadIdx = netdsl_index(next);
    swapcontext(&netdsl_team[previous], &netdsl_team[next]);
}

static void netdsl_coroutine()
{
    netdsl_body(netdsl_arguments);
    netdsl_thread_done();
    if (++netdsl_finished == netdsl_threads)
        setcontext(&netdsl_host);
    netdsl_switch(netdsl_next(netdsl_current));
}

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct alignas(16) float4 { float x, y, z, w; };
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
struct alignas(8) float2 { float x, y; };
static inline float2 make_float2(float x, float y) { return float2{x, y}; }

static inline void __syncthreads()
{
    if (!netdsl_cooperative) {  /* a kernel declared barrier-free used one */
        fprintf(stderr, "emulator: __syncthreads in a kernel run one thread at a time\n");
        abort();
    }
    netdsl_switch(netdsl_next(netdsl_current));
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

/* Runs `call(arguments)` (a kernel's wrapper, below) as every thread of every block, a block at
   a time in netdsl_turn's order, on the calling thread. A kernel without barriers or shuffles
   (`sequential`) runs its threads one after another; any other runs each block's threads as
   coroutines. */
extern "C" void netdsl_launch(const unsigned grid[3], const unsigned block[3], void (*call)(void **), void **arguments,
                              int sequential)
{
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    const unsigned threads = block[0] * block[1] * block[2];
    netdsl_cooperative = !sequential;
    netdsl_threads = threads;
    netdsl_body = call;
    netdsl_arguments = arguments;
    if (netdsl_stacks.size() < threads * NETDSL_STACK)
        netdsl_stacks.resize(threads * NETDSL_STACK);
    for (unsigned zi = 0; zi < grid[2]; ++zi)
        for (unsigned yi = 0; yi < grid[1]; ++yi)
            for (unsigned xi = 0; xi < grid[0]; ++xi) {
                blockIdx = {netdsl_turn(xi, grid[0]), netdsl_turn(yi, grid[1]), netdsl_turn(zi, grid[2])};
                if (sequential) {
                    for (unsigned t = 0; t < threads; ++t) {
                        threadIdx = netdsl_index(netdsl_turn(t, threads));
                        call(arguments);
                    }
                    continue;
                }
                for (unsigned t = 0; t < threads; ++t) {
                    getcontext(&netdsl_team[t]);
                    netdsl_team[t].uc_stack.ss_sp = netdsl_stacks.data() + t * NETDSL_STACK;
                    netdsl_team[t].uc_stack.ss_size = NETDSL_STACK;
                    netdsl_team[t].uc_link = nullptr;
                    makecontext(&netdsl_team[t], netdsl_coroutine, 0);
                }
                const unsigned first = netdsl_turn(0, threads);
                netdsl_current = first;
                netdsl_finished = 0;
                netdsl_block_start();
                threadIdx = netdsl_index(first);
                swapcontext(&netdsl_host, &netdsl_team[first]);
            }
}
"""

HEADER += (Path(__file__).parent / "emulated_ptx.h").read_text()

SIGNATURE = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\(\d+(?:, \d+)?\) )?(\w+)\(([^)]*)\)\s*\{')


def wrappers(source: str) -> str:
    """For each kernel `k(params)`, C `netdsl_call_k(void **a)` calling it with *a[i] as each
    parameter: the coroutines then run C only (no Python frame may span a switch)."""
    out = []
    for name, params in SIGNATURE.findall(source):
        parts = [p.strip() for p in params.split(",") if p.strip()]
        types = [re.sub(r"\w+$", "", p).strip() for p in parts]
        args = ", ".join(f"*({ty} *)a[{i}]" for i, ty in enumerate(types))
        out.append(f'extern "C" void netdsl_call_{name}(void **a) {{ {name}({args}); }}')
    return "\n".join(out) + "\n"


def launch_raw(library, name: str, grid, block, values: list, sequential: bool) -> None:
    """Run kernel `name` with `values` (ctypes objects, one per parameter)."""
    call = getattr(library, f"netdsl_call_{name}")
    arguments = (ctypes.c_void_p * max(len(values), 1))(*[ctypes.addressof(v) for v in values])
    library.netdsl_launch((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), call, arguments, int(sequential))


# What fresh device memory holds here. cudaMalloc's bytes are whatever was there before,
# so a kernel that reads before it writes (adds into a buffer it never cleared, a
# product with beta != 0 on new memory) is wrong on a GPU; over zeroed host memory it
# would be right. A finite garbage value, not NaN: NaN hides in fmaxf and comparisons,
# while 1000 shows up in every sum it enters.
POISON = 1e3


def poisoned(nbytes: int) -> np.ndarray:
    """`nbytes` of host memory reading as POISON floats, standing for a fresh device allocation."""
    return np.full(-(-nbytes // 4), POISON, np.float32).view(np.uint8)[:nbytes]


class Emulator:
    """Generated CUDA compiled for the host; `launch` runs one kernel of a plan."""

    def __init__(self, source: str, folder: Path, defines: tuple[str, ...] = ()):
        """`defines`: preprocessor symbols for the build (tests use NETDSL_MMA_MUTANT)."""
        compiler = shutil.which("g++")
        if compiler is None:
            raise RuntimeError("no C++ compiler (g++) to emulate CUDA with")
        flags = [f"-D{name}" for name in defines]
        digest = hashlib.sha256("\0".join([HEADER, source, wrappers(source), *flags]).encode()).hexdigest()[:16]
        library = folder / f"emulated-{digest}.so"
        if not library.exists():
            (folder / "emulation.h").write_text(HEADER)
            (folder / "kernels.cpp").write_text(source + wrappers(source))
            command = [compiler, "-std=c++20", "-O1", "-fno-strict-aliasing", "-shared", "-fPIC", *flags,
                       "-include", str(folder / "emulation.h"), str(folder / "kernels.cpp"), "-o", str(library)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)}\n{result.stderr[-4000:]}")
        self.library = ctypes.CDLL(str(library))
        self.library.netdsl_launch.argtypes = [ctypes.c_uint * 3, ctypes.c_uint * 3, ctypes.c_void_p,
                                               ctypes.c_void_p, ctypes.c_int]

    def launch(self, kernel, buffers: dict[str, np.ndarray], scalars: dict | None = None) -> None:
        function, values = bind(self.library, kernel, buffers, scalars)
        typed = [t(v) if not isinstance(v, ctypes._SimpleCData) else v for t, v in zip(function.argtypes, values)]
        # flat kernels (a thread per element, grid-stride) have no barriers or shuffles
        launch_raw(self.library, kernel.name, kernel.launch.grid, kernel.launch.block, typed, kernel.shape == "flat")
