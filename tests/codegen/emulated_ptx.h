/* C++ twins of templates/_mma_ptx.j2's PTX functions, from the PTX ISA's
   documented semantics; included after cuda_emulator.py's HEADER, which
   defines NETDSL_EMULATED so the template's inline-assembly versions drop out.

   A warp's lanes are threads 32w .. 32w + 31 of the block (blockDim.x a
   multiple of 32). mma.sync is warp-collective: every lane deposits its
   fragment registers, the last to arrive multiplies the warp's whole tiles,
   and each lane takes back its accumulators. netdsl_warp_sync hands over to
   the next lane of the same warp, so lanes meet there without the rest of the
   block; lanes run in order and a lane reaching a block barrier passes on to
   the next thread, so warp and block rendezvous compose as long as every lane
   of a warp issues the same sequence of them (the rule on a GPU too). */

static inline void netdsl_warp_sync()
{
    if (!netdsl_cooperative || netdsl_threads % 32 != 0) {
        fprintf(stderr, "emulator: a warp-collective instruction needs whole warps run as coroutines\n");
        abort();
    }
    const unsigned me = netdsl_current;
    netdsl_switch((me & ~31u) | ((me + 1) & 31u));
}

static inline uint32_t netdsl_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float netdsl_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static inline float __uint_as_float(uint32_t u) { return netdsl_float(u); }

/* cvt.rna.tf32.f32 as CUTLASS and Ampere's SASS do it: add half an ulp of TF32 (bit 12) to finite values, so
   the carry rounds to nearest with ties away from zero; the low 13 bits are then cleared. */
static inline uint32_t netdsl_tf32(float x)
{
    uint32_t u = netdsl_bits(x);
    if (std::isfinite(x))
        u += 0x1000u;
    return u & 0xFFFFE000u;
}

/* float -> bf16, round to nearest even (NaN kept quiet). */
static inline uint32_t netdsl_bf16(float x)
{
    const uint32_t u = netdsl_bits(x);
    if (std::isnan(x))
        return (u >> 16) | 0x40u;
    return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

static inline uint32_t netdsl_bf16x2(float lo, float hi) { return netdsl_bf16(lo) | (netdsl_bf16(hi) << 16); }

struct netdsl_warp_tiles {
    uint32_t a[32][4], b[32][2];
    float c[32][4], d[32][4];
    unsigned arrived;
};
static netdsl_warp_tiles netdsl_warps[32];

/* NETDSL_MMA_MUTANT swaps A's registers 1 and 2 (rows g + 8 and columns + 4/+ 8): tests build it to show
   that a kernel indexing fragments any other way than the documented layout gives wrong products. */
#ifdef NETDSL_MMA_MUTANT
static const int netdsl_a_swap[4] = {0, 2, 1, 3};
#else
static const int netdsl_a_swap[4] = {0, 1, 2, 3};
#endif

/* Row-major 16 x k A, k x 8 B (k = 8 for TF32, 16 for BF16) assembled from the lanes' registers as
   PTX lays them out (g = lane / 4, t = lane % 4): m16n8k8 .tf32 A a0 (g, t), a1 (g + 8, t), a2 (g, t + 4),
   a3 (g + 8, t + 4); B b0 (t, g), b1 (t + 4, g). m16n8k16 .bf16, two elements per register, low half first:
   A reg0 (g, 2t..2t+1), reg1 (g + 8, 2t..), reg2 (g, 2t+8..), reg3 (g + 8, 2t+8..); B reg0 (2t..2t+1, g),
   reg1 (2t+8..2t+9, g). C and D: c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1). */
static void netdsl_multiply(netdsl_warp_tiles &w, bool bf16)
{
    const int depth = bf16 ? 16 : 8;
    float a[16][16], b[16][8];
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 4; ++i) {
            const uint32_t reg = w.a[lane][netdsl_a_swap[i]];
            const int row = g + (i & 1) * 8;
            if (bf16) {
                const int col = 2 * t + (i >> 1) * 8;
                a[row][col] = netdsl_float(reg << 16);
                a[row][col + 1] = netdsl_float(reg & 0xFFFF0000u);
            } else {
                a[row][t + (i >> 1) * 4] = netdsl_float(reg & 0xFFFFE000u);  /* the MMA reads 19 bits */
            }
        }
        for (int i = 0; i < 2; ++i) {
            const uint32_t reg = w.b[lane][i];
            if (bf16) {
                b[2 * t + i * 8][g] = netdsl_float(reg << 16);
                b[2 * t + i * 8 + 1][g] = netdsl_float(reg & 0xFFFF0000u);
            } else {
                b[t + i * 4][g] = netdsl_float(reg & 0xFFFFE000u);
            }
        }
    }
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane >> 2, t = lane & 3;
        for (int e = 0; e < 4; ++e) {
            const int row = g + (e >> 1) * 8, col = 2 * t + (e & 1);
            float sum = w.c[lane][e];  /* FP32 accumulation; products of TF32 or BF16 values are exact */
            for (int kk = 0; kk < depth; ++kk)
                sum += a[row][kk] * b[kk][col];
            w.d[lane][e] = sum;
        }
    }
}

static void netdsl_mma(float d[4], const uint32_t a[4], const uint32_t b[2], bool bf16)
{
    const unsigned lane = netdsl_current & 31u;
    netdsl_warp_tiles &w = netdsl_warps[netdsl_current >> 5];
    memcpy(w.a[lane], a, sizeof w.a[lane]);
    memcpy(w.b[lane], b, sizeof w.b[lane]);
    memcpy(w.c[lane], d, sizeof w.c[lane]);
    if (++w.arrived == 32) {  /* the last lane in: the whole warp's registers are here */
        w.arrived = 0;
        netdsl_multiply(w, bf16);
    }
    netdsl_warp_sync();
    /* w.d stays intact until every lane has read it: the next product needs all 32 lanes again */
    memcpy(d, w.d[lane], sizeof w.d[lane]);
}

static inline void netdsl_mma_tf32(float d[4], const uint32_t a[4], const uint32_t b[2]) { netdsl_mma(d, a, b, false); }
static inline void netdsl_mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]) { netdsl_mma(d, a, b, true); }

/* ldmatrix .x4: every lane deposits its row address; the last to arrive gathers each lane's four words
   (lane l, register j: word l % 4 of the row given by lane 8j + l / 4). */
struct netdsl_warp_rows {
    const uint32_t *row[32];
    uint32_t out[32][4];
    unsigned arrived;
};
static netdsl_warp_rows netdsl_rows[32];
/* NETDSL_LDMATRIX_MUTANT hands out matrices 1 and 2 in each other's registers (tests: the kernels' row
   addresses must follow the documented lane groups). */
#ifdef NETDSL_LDMATRIX_MUTANT
static const unsigned netdsl_matrix_swap[4] = {0, 2, 1, 3};
#else
static const unsigned netdsl_matrix_swap[4] = {0, 1, 2, 3};
#endif

static void netdsl_ldmatrix_x4(uint32_t r[4], const float *row)
{
    if ((uintptr_t)row % 16 != 0) {
        fprintf(stderr, "emulator: ldmatrix row address %p is not 16-byte aligned\n", (const void *)row);
        abort();
    }
    const unsigned lane = netdsl_current & 31u;
    netdsl_warp_rows &w = netdsl_rows[netdsl_current >> 5];
    w.row[lane] = (const uint32_t *)row;
    if (++w.arrived == 32) {
        w.arrived = 0;
        for (unsigned l = 0; l < 32; ++l)
            for (unsigned j = 0; j < 4; ++j)
                w.out[l][j] = w.row[8 * netdsl_matrix_swap[j] + l / 4][l % 4];
    }
    netdsl_warp_sync();
    memcpy(r, w.out[lane], sizeof w.out[lane]);
}

/* cp.async: each thread queues its copies; commit closes the open ones into a group, and wait_group N
   performs the thread's oldest groups until N are left. The destination is poisoned (all-ones bytes, a NaN)
   at issue, so a read before the wait, or by another thread before a barrier, shows in the result. */
struct netdsl_copy { char *dst; const char *src; int bytes, src_bytes; };
static std::vector<netdsl_copy> netdsl_open[1024];
static std::vector<std::vector<netdsl_copy>> netdsl_groups[1024];

static void netdsl_cp_async(float *dst, const float *src, int bytes, int src_bytes)
{
    if (((uintptr_t)dst | (uintptr_t)(src_bytes ? src : dst)) % bytes != 0) {
        fprintf(stderr, "emulator: cp.async of %d bytes from %p to %p is misaligned\n", bytes, (void *)src, (void *)dst);
        abort();
    }
    memset(dst, 0xFF, bytes);
    netdsl_open[netdsl_current].push_back({(char *)dst, (const char *)src, bytes, src_bytes});
}

static inline void netdsl_cp_async16(float *dst, const float *src) { netdsl_cp_async(dst, src, 16, 16); }
static inline void netdsl_cp_async4(float *dst, const float *src, int src_size) { netdsl_cp_async(dst, src, 4, src_size); }

static inline void netdsl_cp_async_commit()
{
    netdsl_groups[netdsl_current].push_back(std::move(netdsl_open[netdsl_current]));
    netdsl_open[netdsl_current].clear();
}

template <int pending> static inline void netdsl_cp_async_wait()
{
    auto &groups = netdsl_groups[netdsl_current];
    while (groups.size() > (size_t)pending) {
        for (const netdsl_copy &c : groups.front()) {
            memcpy(c.dst, c.src, c.src_bytes);
            memset(c.dst + c.src_bytes, 0, c.bytes - c.src_bytes);
        }
        groups.erase(groups.begin());
    }
}

static void netdsl_block_start()
{
    for (netdsl_warp_tiles &w : netdsl_warps)
        w.arrived = 0;
    for (netdsl_warp_rows &w : netdsl_rows)
        w.arrived = 0;
    for (unsigned t = 0; t < netdsl_threads; ++t) {
        netdsl_open[t].clear();
        netdsl_groups[t].clear();
    }
}

/* Called as a thread finishes: a copy still queued would land after the kernel, which CUDA leaves undefined. */
static void netdsl_thread_done()
{
    if (!netdsl_open[netdsl_current].empty() || !netdsl_groups[netdsl_current].empty()) {
        fprintf(stderr, "emulator: thread %u ended with cp.async copies outstanding\n", netdsl_current);
        abort();
    }
}
