"""Philox4x32-10 streams: numpy against Random123's answers, then C and CUDA against numpy, bit for bit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import numpy as np
import pytest

from netdsl import rng

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

# Random123's kat_vectors for philox4x32_10: (counter, key, expected output).
PHILOX_KNOWN_ANSWERS = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]

# (seed, stream, step, start, n, keep_prob): block-aligned and unaligned starts,
# steps past 2**32, and indices past 2**34 where the counter's last word is used.
BACKEND_CASES = [
    (0, "fc6.dropout@gpu0", 0, 0, 40_000, 0.5),
    (1, "fc7.dropout@gpu1", 2**32 + 5, 3, 30_001, 0.9),
    (2**64 - 1, "conv1.conv@gpu0.weight", 2**64 - 1, 2**34 - 6, 30_000, 0.1),
]


def render_philox(qualifier: str) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined)
    return env.get_template("_philox.j2").render(qualifier=qualifier)


def assert_same_bits(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    differ = np.flatnonzero(actual != expected)
    assert differ.size == 0, (
        f"{what}: {differ.size} of {expected.size} differ; first at {differ[:5].tolist()}: "
        f"got {actual[differ[:5]].tolist()}, expected {expected[differ[:5]].tolist()}"
    )


# --- numpy: the specification ------------------------------------------------------------


@pytest.mark.parametrize("counter, key, expected", PHILOX_KNOWN_ANSWERS)
def test_philox_matches_random123_known_answers(counter, key, expected):
    out = rng.philox4x32(np.array(counter, np.uint32), np.array(key, np.uint32))
    assert out.dtype == np.uint32
    assert out.tolist() == expected


def test_philox_vectorises_over_counters_and_per_row_keys():
    counters = np.array([c for c, _, _ in PHILOX_KNOWN_ANSWERS], np.uint32)
    keys = np.array([k for _, k, _ in PHILOX_KNOWN_ANSWERS], np.uint32)
    assert rng.philox4x32(counters, keys).tolist() == [e for _, _, e in PHILOX_KNOWN_ANSWERS]


def test_key_derivation_is_fnv1a_then_splitmix_finaliser():
    # Published FNV-1a 64 test vectors and the first splitmix64 output for seed 0.
    assert rng.fnv1a64(b"") == 0xCBF29CE484222325
    assert rng.fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert rng.fnv1a64(b"foobar") == 0x85944171F73967E8
    assert rng.mix64(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    key64 = rng.mix64(rng.fnv1a64((1).to_bytes(8, "little") + b"fc6.dropout@gpu0"))
    assert rng.stream_key(1, "fc6.dropout@gpu0") == (key64 & 0xFFFFFFFF, key64 >> 32)
    # Pinned: changing the derivation silently would change every saved run's masks.
    assert rng.stream_key(1, "fc6.dropout@gpu0") == (0xB592BB6C, 0xD373670F)


def test_stream_keys_differ_across_names_and_seeds():
    names = [f"{layer}.{kind}@gpu{g}" for layer in ("conv1", "fc6", "fc7") for kind in ("conv", "dropout") for g in (0, 1)]
    names += [f"{n}.weight" for n in names]
    keys = {rng.stream_key(seed, name) for seed in (0, 1, 2, 2**63) for name in names}
    assert len(keys) == 4 * len(names)
    assert all(isinstance(k, np.uint32) for k in rng.stream_key(0, "x"))
    with pytest.raises(ValueError):
        rng.stream_key(-1, "x")


def test_draws_are_deterministic():
    key = rng.stream_key(7, "fc6.dropout@gpu0")
    assert_same_bits(rng.uniform(key, 3, 1000), rng.uniform(key, 3, 1000), "uniform")
    assert_same_bits(rng.normal(key, 3, 1001), rng.normal(key, 3, 1001), "normal")
    assert not np.array_equal(rng.uniform(key, 3, 1000), rng.uniform(key, 4, 1000))


@pytest.mark.parametrize("step, index", [(0, 0), (5, 7), (2**32 + 9, 13), (2**64 - 1, 2**34 + 2)])
def test_element_i_is_word_i_mod_4_of_block_i_div_4(step, index):
    key = rng.stream_key(3, "fc7.dropout@gpu0")
    block = index // 4
    counter = np.array([block & 0xFFFFFFFF, step & 0xFFFFFFFF, step >> 32, block >> 32], np.uint32)
    word = int(rng.philox4x32(counter, np.array(key))[index % 4])
    assert rng.uniform(key, step, 1, start=index)[0] == np.float32((word >> 8) * 2.0**-24)


def test_a_chunk_equals_the_slice_of_a_longer_draw():
    key = rng.stream_key(0, "fc6.dropout@gpu1")
    whole = rng.uniform(key, 11, 64)
    for start, n in [(0, 64), (1, 5), (4, 8), (6, 58), (63, 1), (64, 0)]:
        assert_same_bits(rng.uniform(key, 11, n, start=start), whole[start : start + n], f"chunk {start}+{n}")


def test_uniform_moments_and_histogram_for_a_million_samples():
    n = 1_000_000
    u = rng.uniform(rng.stream_key(42, "stats"), 0, n).astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert np.all(u * 2**24 == np.floor(u * 2**24)), "values must lie on the 2**-24 grid"
    # Six standard errors: U[0,1) has var 1/12 and Var[(U - 1/2)^2] = 1/80 - 1/144.
    assert abs(u.mean() - 0.5) < 6 * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 6 * np.sqrt((1 / 80 - 1 / 144) / n)
    counts = np.bincount((u * 100).astype(int), minlength=100)
    chi2 = ((counts - n / 100) ** 2 / (n / 100)).sum()
    assert chi2 < 99 + 6 * np.sqrt(2 * 99), f"chi-square {chi2:.1f} on 99 degrees of freedom"


def test_keep_mask_fraction_and_edges():
    key = rng.stream_key(5, "fc6.dropout@gpu0")
    n = 1_000_000
    for p in (0.1, 0.5, 0.9):
        fraction = rng.bernoulli_keep(key, 1, n, p).mean()
        assert abs(fraction - p) < 6 * np.sqrt(p * (1 - p) / n)
    assert rng.bernoulli_keep(key, 1, 1000, 1.0).all()
    assert not rng.bernoulli_keep(key, 1, 1000, 0.0).any()
    with pytest.raises(ValueError):
        rng.bernoulli_keep(key, 1, 10, 1.5)


def test_keep_prob_is_rounded_to_float32_as_kernels_receive_it():
    key = rng.stream_key(5, "fc6.dropout@gpu0")
    u0 = rng.uniform(key, 2, 1)[0]
    just_above = np.nextafter(np.float64(u0), 1.0)  # rounds back down to u0 in float32
    assert not rng.bernoulli_keep(key, 2, 1, float(just_above))[0]


def test_normal_moments():
    n = 1_000_001
    z = rng.normal(rng.stream_key(9, "conv1.conv@gpu0.weight"), 0, n).astype(np.float64)
    assert z.shape == (n,) and np.isfinite(z).all()
    assert abs(z.mean()) < 6 / np.sqrt(n)
    assert abs(z.var() - 1) < 6 * np.sqrt(2 / n)
    assert abs(np.mean(np.abs(z) < 1) - 0.682689) < 0.003


# --- C: the rendered template against numpy --------------------------------------------------

C_HARNESS_HEAD = """
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
"""

# `philox c0 c1 c2 c3 k0 k1` prints one block; `draw k0 k1 step start n keep_bits` writes
# n float32 uniforms then n keep bytes. keep_prob travels as bits so no parser rounds it.
C_HARNESS_MAIN = """
static uint64_t arg(char **argv, int i) { return strtoull(argv[i], NULL, 0); }

int main(int argc, char **argv)
{
    if (argc == 8 && strcmp(argv[1], "philox") == 0) {
        uint32_t ctr[4], key[2], out[4];
        for (int w = 0; w < 4; ++w) ctr[w] = (uint32_t)arg(argv, 2 + w);
        key[0] = (uint32_t)arg(argv, 6);
        key[1] = (uint32_t)arg(argv, 7);
        netdsl_philox4x32(ctr, key, out);
        printf("%" PRIx32 " %" PRIx32 " %" PRIx32 " %" PRIx32 "\\n", out[0], out[1], out[2], out[3]);
        return 0;
    }
    if (argc == 8 && strcmp(argv[1], "draw") == 0) {
        const uint32_t k0 = (uint32_t)arg(argv, 2), k1 = (uint32_t)arg(argv, 3);
        const uint64_t step = arg(argv, 4), start = arg(argv, 5), n = arg(argv, 6);
        const uint32_t keep_bits = (uint32_t)arg(argv, 7);
        float keep_prob;
        memcpy(&keep_prob, &keep_bits, sizeof keep_prob);
        float *u = malloc(n * sizeof *u);
        unsigned char *keep = malloc(n);
        for (uint64_t i = 0; i < n; ++i) {
            u[i] = netdsl_uniform(k0, k1, step, start + i);
            keep[i] = (unsigned char)netdsl_keep(k0, k1, step, start + i, keep_prob);
        }
        fwrite(u, sizeof *u, n, stdout);
        fwrite(keep, 1, n, stdout);
        return 0;
    }
    fprintf(stderr, "usage: philox c0 c1 c2 c3 k0 k1 | draw k0 k1 step start n keep_bits\\n");
    return 2;
}
"""


def draw_arguments(seed, stream, step, start, n, keep_prob) -> list[str]:
    k0, k1 = rng.stream_key(seed, stream)
    keep_bits = np.float32(keep_prob).view(np.uint32)
    return ["draw", *(str(int(v)) for v in (k0, k1, step, start, n, keep_bits))]


def parse_draw(stdout: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    assert len(stdout) == 5 * n, f"expected {5 * n} bytes, got {len(stdout)}"
    return np.frombuffer(stdout[: 4 * n], np.uint32), np.frombuffer(stdout[4 * n :], np.uint8).astype(bool)


def assert_draw_matches_numpy(stdout: bytes, seed, stream, step, start, n, keep_prob) -> None:
    uniform_bits, keep = parse_draw(stdout, n)
    key = rng.stream_key(seed, stream)
    assert_same_bits(uniform_bits, rng.uniform(key, step, n, start=start).view(np.uint32), "uniform bits")
    assert_same_bits(keep, rng.bernoulli_keep(key, step, n, keep_prob, start=start), "keep flags")
    assert 0 < keep.sum() < n, "a mask that keeps all or nothing would not test the comparison"


@pytest.fixture(scope="module")
def c_harness(tmp_path_factory) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (gcc or cc) on PATH")
    build = tmp_path_factory.mktemp("philox_c")
    source = build / "harness.c"
    source.write_text(C_HARNESS_HEAD + render_philox("static inline") + C_HARNESS_MAIN)
    binary = build / "harness"
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    subprocess.run([compiler, *flags, str(source), "-o", str(binary)], check=True, capture_output=True, text=True)
    return binary


@pytest.mark.parametrize("counter, key, expected", PHILOX_KNOWN_ANSWERS)
def test_c_philox_matches_random123_known_answers(c_harness, counter, key, expected):
    args = [str(c_harness), "philox", *(hex(v) for v in counter + key)]
    printed = subprocess.run(args, check=True, capture_output=True, text=True).stdout.split()
    assert [int(word, 16) for word in printed] == expected


@pytest.mark.parametrize("seed, stream, step, start, n, keep_prob", BACKEND_CASES)
def test_c_draws_match_numpy_bit_for_bit(c_harness, seed, stream, step, start, n, keep_prob):
    args = [str(c_harness), *draw_arguments(seed, stream, step, start, n, keep_prob)]
    stdout = subprocess.run(args, check=True, capture_output=True).stdout
    assert_draw_matches_numpy(stdout, seed, stream, step, start, n, keep_prob)


def test_template_demands_its_qualifier():
    with pytest.raises(jinja2.UndefinedError):
        jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined).get_template(
            "_philox.j2"
        ).render()


# --- CUDA: the same template as device code -------------------------------------------------

CUDA_HARNESS_HEAD = """
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
"""

# The kernel alone is what `-cubin` checks; main() runs it where a GPU exists, with the
# C harness's `draw` interface and output, and exits 77 when CUDA cannot run.
CUDA_HARNESS_MAIN = """
__global__ void draw_kernel(uint32_t k0, uint32_t k1, uint64_t step, uint64_t start, uint32_t n,
                            float keep_prob, float *u, unsigned char *keep)
{
    const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        u[i] = netdsl_uniform(k0, k1, step, start + i);
        keep[i] = (unsigned char)netdsl_keep(k0, k1, step, start + i, keep_prob);
    }
}

static void check(cudaError_t status, const char *what)
{
    if (status != cudaSuccess) {
        fprintf(stderr, "%s: %s\\n", what, cudaGetErrorString(status));
        exit(77);
    }
}

int main(int argc, char **argv)
{
    if (argc != 8 || strcmp(argv[1], "draw") != 0) return 2;
    const uint32_t k0 = (uint32_t)strtoull(argv[2], NULL, 0), k1 = (uint32_t)strtoull(argv[3], NULL, 0);
    const uint64_t step = strtoull(argv[4], NULL, 0), start = strtoull(argv[5], NULL, 0);
    const uint32_t n = (uint32_t)strtoull(argv[6], NULL, 0), keep_bits = (uint32_t)strtoull(argv[7], NULL, 0);
    float keep_prob;
    memcpy(&keep_prob, &keep_bits, sizeof keep_prob);
    float *u, *host_u = (float *)malloc(n * sizeof(float));
    unsigned char *keep, *host_keep = (unsigned char *)malloc(n);
    check(cudaMalloc(&u, n * sizeof(float)), "cudaMalloc");
    check(cudaMalloc(&keep, n), "cudaMalloc");
    draw_kernel<<<(n + 255) / 256, 256>>>(k0, k1, step, start, n, keep_prob, u, keep);
    check(cudaGetLastError(), "launch");
    check(cudaMemcpy(host_u, u, n * sizeof(float), cudaMemcpyDeviceToHost), "copy uniforms");
    check(cudaMemcpy(host_keep, keep, n, cudaMemcpyDeviceToHost), "copy keep flags");
    fwrite(host_u, sizeof(float), n, stdout);
    fwrite(host_keep, 1, n, stdout);
    return 0;
}
"""


@pytest.fixture(scope="module")
def cuda_source(tmp_path_factory) -> Path:
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not on PATH: generated CUDA cannot be compiled here")
    source = tmp_path_factory.mktemp("philox_cuda") / "harness.cu"
    source.write_text(CUDA_HARNESS_HEAD + render_philox("__device__ __forceinline__") + CUDA_HARNESS_MAIN)
    return source


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_template_compiles(cuda_source, arch):
    cubin = cuda_source.with_name(f"harness_{arch}.cubin")
    result = subprocess.run(
        ["nvcc", "-cubin", f"-arch={arch}", "-Werror=all-warnings", str(cuda_source), "-o", str(cubin)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert cubin.stat().st_size > 0


@pytest.mark.gpu
@pytest.mark.parametrize("seed, stream, step, start, n, keep_prob", BACKEND_CASES)
def test_cuda_draws_match_numpy_bit_for_bit(cuda_source, seed, stream, step, start, n, keep_prob):
    binary = cuda_source.with_name("harness_cuda")
    if not binary.exists():
        subprocess.run(["nvcc", "-arch=sm_80", str(cuda_source), "-o", str(binary)], check=True, capture_output=True)
    result = subprocess.run([str(binary), *draw_arguments(seed, stream, step, start, n, keep_prob)], capture_output=True)
    if result.returncode == 77:
        pytest.skip(f"no usable CUDA GPU: {result.stderr.decode().strip()}")
    assert result.returncode == 0, result.stderr.decode()
    assert_draw_matches_numpy(result.stdout, seed, stream, step, start, n, keep_prob)
