"""The CUDA matrix products alone on a GPU: correctness against a float64 host
reference and against the SIMT kernel, and time per call, for the SIMT
(fp32), TF32 and BF16 variants on square and AlexNet-sized shapes.

Needs only nvcc where it is built and a driver where it runs (no PyCUDA):

    python benchmarks/gemm_bench.py build/gemm_bench   # renders, writes build/gemm_bench.cu, compiles
    build/gemm_bench                                   # on the GPU machine: one line per case

The harness is C++ generated here: the rendered module, then a main that
launches each variant with the grid and block the chooser gives it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from netdsl.codegen import TARGETS, render_module

CUDA = TARGETS["cuda"]
PRECISIONS = ("fp32", "tf32", "bf16")
# (label, m, n, k, trans_a, trans_b): checked against float64 on the host (small, odd sizes) ...
CHECKED = [("odd", 517, 263, 1031, ta, tb) for ta in (False, True) for tb in (False, True)]
# ... and timed (compared with the SIMT result); AlexNet-1gpu's products at batch 128, per tower
TIMED = [
    ("square", 4096, 4096, 4096, False, False),
    ("conv2 forward", 128, 93312, 1200, False, False),
    ("conv1 weight grad", 48, 363, 387200, False, True),
    ("fc6 forward", 128, 2048, 9216, False, True),
    ("fc6 input grad", 128, 9216, 2048, False, False),
]

HEAD = r"""
#include <cstdio>
#include <cmath>
#include <vector>
#include <cuda_runtime.h>

typedef void (*gemm_t)(int64_t, int64_t, int64_t, int64_t, float, const float *, int64_t, int64_t, const float *,
                       int64_t, int64_t, float, float *, int64_t, int64_t);
struct Case { const char *label, *precision, *kernel; gemm_t f; int m, n, k, ta, tb; dim3 grid, block; int checked; };
"""

MAIN = r"""
static float *device_random(size_t n, unsigned seed, std::vector<float> &host)
{
    host.resize(n);
    for (size_t i = 0; i < n; ++i) {
        seed = seed * 1664525u + 1013904223u;
        host[i] = ((seed >> 8) / 16777216.0f) * 2.0f - 1.0f;
    }
    float *d;
    cudaMalloc(&d, n * 4);
    cudaMemcpy(d, host.data(), n * 4, cudaMemcpyHostToDevice);
    return d;
}

static double rel(const std::vector<float> &x, const std::vector<double> &ref)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        num += (x[i] - ref[i]) * (x[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return std::sqrt(num / den);
}

int main()
{
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    std::vector<double> simt;  /* the SIMT result of the current timed shape, in double */
    for (const Case &c : CASES) {
        const int lda = c.ta ? c.m : c.k, ldb = c.tb ? c.k : c.n;
        std::vector<float> ha, hb, hc((size_t)c.m * c.n);
        float *a = device_random((size_t)c.m * c.k, 1u, ha), *b = device_random((size_t)c.k * c.n, 2u, hb), *out;
        cudaMalloc(&out, hc.size() * 4);
        auto launch = [&]() { c.f<<<c.grid, c.block>>>(1, c.m, c.n, c.k, 1.0f, a, lda, 0, b, ldb, 0, 0.0f, out, c.n, 0); };
        launch();
        cudaError_t err = cudaDeviceSynchronize();
        if (err != cudaSuccess) {
            printf("%s %s: %s\n", c.label, c.kernel, cudaGetErrorString(err));
            return 1;
        }
        cudaMemcpy(hc.data(), out, hc.size() * 4, cudaMemcpyDeviceToHost);
        double error = -1;
        if (c.checked) {
            std::vector<double> ref(hc.size(), 0.0);
            for (int i = 0; i < c.m; ++i)
                for (int p = 0; p < c.k; ++p) {
                    const double x = ha[c.ta ? (size_t)p * lda + i : (size_t)i * lda + p];
                    for (int j = 0; j < c.n; ++j)
                        ref[(size_t)i * c.n + j] += x * hb[c.tb ? (size_t)j * ldb + p : (size_t)p * ldb + j];
                }
            error = rel(hc, ref);
        } else if (c.precision[1] == 'p') {  /* fp32: keep as the reference of the next variants */
            simt.assign(hc.begin(), hc.end());
        } else {
            error = rel(hc, simt);
        }
        cudaEvent_t start, stop;
        cudaEventCreate(&start);
        cudaEventCreate(&stop);
        const int reps = c.checked ? 3 : 10;
        cudaEventRecord(start);
        for (int r = 0; r < reps; ++r)
            launch();
        cudaEventRecord(stop);
        cudaEventSynchronize(stop);
        float ms;
        cudaEventElapsedTime(&ms, start, stop);
        ms /= reps;
        printf("%-18s %-5s %-28s m=%6d n=%6d k=%7d grid=%5u,%4u  %9.3f ms %7.1f TFLOPS  rel.err %s %.3g\n", c.label,
               c.precision, c.kernel, c.m, c.n, c.k, c.grid.x, c.grid.y, ms, 2.0 * c.m * c.n * c.k / ms / 1e9,
               c.checked ? "vs float64" : "vs SIMT", error);
        cudaFree(a);
        cudaFree(b);
        cudaFree(out);
    }
    return 0;
}
"""


def cases():
    rows, variants = [], set()
    for checked, shapes in ((1, CHECKED), (0, TIMED)):
        for label, m, n, k, ta, tb in shapes:
            for precision in PRECISIONS:
                variant, launch = CUDA.gemm(ta, tb, m, n, 1, precision=precision, k=k)
                variants.add(variant)
                (gx, gy, gz), (bx, _, _) = launch.grid, launch.block
                rows.append(f'    {{"{label}", "{precision}", "{variant.name}", {variant.name}, {m}, {n}, {k}, '
                            f'{int(ta)}, {int(tb)}, dim3({gx}, {gy}, {gz}), dim3({bx}), {checked}}},')
    return sorted(variants, key=lambda v: v.name), rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary", type=Path)
    parser.add_argument("--arch", default="sm_90")
    args = parser.parse_args(argv)
    variants, rows = cases()
    source = args.binary.with_suffix(".cu")
    source.parent.mkdir(parents=True, exist_ok=True)
    table = "static const Case CASES[] = {\n" + "\n".join(rows) + "\n};\n"
    source.write_text(render_module([], "cuda", gemms=variants) + HEAD + table + MAIN)
    subprocess.run(["nvcc", "-O3", f"-arch={args.arch}", str(source), "-o", str(args.binary)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
