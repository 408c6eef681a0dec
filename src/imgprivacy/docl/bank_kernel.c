/* The bank's fused distance kernel: every layer of a stack of autoencoders and the distance tail
 * (bias, sigmoid, subtract the input, square, sum over features) in one pass, so the (B, D)
 * reconstruction is never written to memory. Built by imgprivacy.docl.bank_kernels with
 * -O3 -mavx2 -mfma -mf16c; loaded with ctypes.
 *
 * Layouts (those of imgprivacy.docl.bank_stack.LayerStack): layer 0 weights (n, out, in), later
 * layers (n, in, out); biases (n, out) in fp32; weights in fp32, fp16 or bf16 (dtype 0, 1, 2),
 * always accumulated in fp32. x is (B, D) fp32; distances go to out[m * B + b].
 *
 * NaN propagates as in torch: relu and the sigmoid's clamp keep a NaN operand (max/min return
 * their second operand when either is NaN), so a model whose hidden layer overflows still gives
 * a NaN distance.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
enum { F32 = 0, F16 = 1, BF16 = 2 };
#define STREAM_ROWS 4 /* up to this many rows per block, later layers stream their weights */

INLINE __m256 load8(const void *p, long i, int dt) {
    if (dt == F32) return _mm256_loadu_ps((const float *)p + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (dt == F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INLINE float load1(const void *p, long i, int dt) {
    if (dt == F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    if (dt == F16) return _cvtsh_ss(h);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* One input alone is memory-bound: fetching weights this far ahead of their use measured ~8
 * points of read bandwidth better than the hardware prefetcher alone (256-2048 bytes tried). */
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 512
#endif
INLINE void prefetch(const void *p, long i, int dt) {
    _mm_prefetch((const char *)p + i * (dt == F32 ? 4 : 2) + PREFETCH_BYTES, _MM_HINT_T0);
}

/* A panel of weights about to be used for the first time: fetched while the previous panel's
 * first tile of rows runs, so a small batch (few tiles per panel) does not wait on each miss. */
#ifndef PANEL_PREFETCH
#define PANEL_PREFETCH 1
#endif
/* ...only for blocks of at most this many rows: blocks of 48 (B >= 48) measured 5-25% slower
 * with it on two threads, where each panel serves 16 tiles and there is nothing to hide. */
#ifndef PANEL_PREFETCH_ROWS
#define PANEL_PREFETCH_ROWS 32
#endif
INLINE void prefetch_at(const void *p, long i, int dt) {
    _mm_prefetch((const char *)p + i * (dt == F32 ? 4 : 2), _MM_HINT_T0);
}

INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE __m256 relu8(__m256 v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
INLINE float relu1(float v) { return v < 0.0f ? 0.0f : v; }

/* 1 / (1 + exp(-z)); exp by Cephes' range reduction and degree-5 polynomial (~1 ulp). |z| is
 * clamped to 80, where the sigmoid is 1 or below 2e-35 (what a distance can notice). */
INLINE __m256 sigmoid8(__m256 z) {
    __m256 t = _mm256_min_ps(_mm256_set1_ps(80.0f), _mm256_sub_ps(_mm256_setzero_ps(), z));
    t = _mm256_max_ps(_mm256_set1_ps(-80.0f), t);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), t);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 ex = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    /* 1 / den by the approximate reciprocal and one Newton step (~2 ulp; a division costs more) */
    __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), ex);
    __m256 rc = _mm256_rcp_ps(den);
    return _mm256_mul_ps(rc, _mm256_fnmadd_ps(den, rc, _mm256_set1_ps(2.0f)));
}

INLINE float sigmoid1(float z) { return 1.0f / (1.0f + expf(-z)); }

/* First layer, o[r, j] = relu(bias[j] + sum_k a[r, k] * w[j, k]) for R rows and J outputs
 * (R*J accumulators plus R inputs: 16 registers at R=3, J=4). */
INLINE void dot_tile(int R, int J, int dt, long K, const float *a, long lda, const void *w,
                     long j0, const float *bias, float *o, long ldo, int ahead) {
    __m256 acc[3][4];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++) acc[r][j] = _mm256_setzero_ps();
    long k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 av[3];
        for (int r = 0; r < R; r++) av[r] = _mm256_loadu_ps(a + r * lda + k);
        for (int j = 0; j < J; j++) {
            if (R == 1) prefetch(w, (j0 + j) * K + k, dt);
            else if (PANEL_PREFETCH && j < ahead && (k & 15) == 0) prefetch_at(w, (j0 + J + j) * K + k, dt);
            __m256 wv = load8(w, (j0 + j) * K + k, dt);
            for (int r = 0; r < R; r++) acc[r][j] = _mm256_fmadd_ps(av[r], wv, acc[r][j]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++) {
            float s = hsum(acc[r][j]);
            for (long kk = k; kk < K; kk++) s += a[r * lda + kk] * load1(w, (j0 + j) * K + kk, dt);
            o[r * ldo + j0 + j] = relu1(s + bias[j0 + j]);
        }
}

INLINE void dot_cols(int J, int dt, long rows, long K, long ldo, const float *a, const void *w,
                     long j0, const float *bias, float *o, int ahead) {
    long r = 0;
    for (; r + 3 <= rows; r += 3, ahead = 0) /* the first tile fetches the next panel */
        dot_tile(3, J, dt, K, a + r * K, K, w, j0, bias, o + r * ldo, ldo, ahead);
    if (rows - r == 2) dot_tile(2, J, dt, K, a + r * K, K, w, j0, bias, o + r * ldo, ldo, ahead);
    if (rows - r == 1) dot_tile(1, J, dt, K, a + r * K, K, w, j0, bias, o + r * ldo, ldo, 0);
}

/* Output panels outer, rows inner: a panel's weight rows stay in L1 across the block's rows. */
INLINE void dot_layer(int dt, long rows, long K, long J, const float *a, const void *w,
                      const float *bias, float *o) {
    long j = 0;
    for (; j + 4 <= J; j += 4) {
        long left = J - j - 4;
        int ahead = rows > PANEL_PREFETCH_ROWS ? 0 : left < 4 ? (int)left : 4;
        dot_cols(4, dt, rows, K, J, a, w, j, bias, o, ahead);
    }
    for (; j < J; j++) dot_cols(1, dt, rows, K, J, a, w, j, bias, o, 0);
}

/* The end of a later layer for 8 columns of one row: hidden layers store relu(z); the last one
 * adds (sigmoid(z) - x)^2 to that row's running sum dsum[r]. */
INLINE void finish8(int last, __m256 z, float *o, const float *x, float *dsum) {
    if (!last) {
        _mm256_storeu_ps(o, relu8(z));
    } else {
        __m256 d = _mm256_sub_ps(sigmoid8(z), _mm256_loadu_ps(x));
        _mm256_storeu_ps(dsum, _mm256_fmadd_ps(d, d, _mm256_loadu_ps(dsum)));
    }
}

INLINE void finish1(int last, float z, float *o, const float *x, float *dsum) {
    if (!last) {
        *o = relu1(z);
    } else {
        float d = sigmoid1(z) - *x;
        *dsum += d * d;
    }
}

/* Later layers, z[r, c] = bias[c] + sum_k a[r, k] * w[k, c] for R rows and 8*C columns. */
INLINE void axpy_tile(int R, int C, int dt, int last, long K, long J, const float *a,
                      const void *w, long c0, const float *bias, float *o, const float *x,
                      long ldx, float *dsum, int ahead) {
    __m256 acc[6][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (long k = 0; k < K; k++) {
        __m256 wv[2];
        for (int c = 0; c < C; c++) wv[c] = load8(w, k * J + c0 + 8 * c, dt);
        if (PANEL_PREFETCH && ahead) prefetch_at(w, k * J + c0 + 8 * C, dt);
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_broadcast_ss(a + r * K + k);
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(av, wv[c], acc[r][c]);
        }
    }
    if (last) { /* the tail from memory: inlined among 12 live accumulators it ran 2x slower */
        float zb[6][16] __attribute__((aligned(32)));
        for (int c = 0; c < C; c++) {
            __m256 bv = _mm256_loadu_ps(bias + c0 + 8 * c);
            for (int r = 0; r < R; r++) _mm256_store_ps(zb[r] + 8 * c, _mm256_add_ps(acc[r][c], bv));
        }
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++)
                finish8(1, _mm256_load_ps(zb[r] + 8 * c), 0, x + r * ldx + c0 + 8 * c, dsum + 8 * r);
        return;
    }
    for (int c = 0; c < C; c++) {
        __m256 bv = _mm256_loadu_ps(bias + c0 + 8 * c);
        for (int r = 0; r < R; r++)
            finish8(last, _mm256_add_ps(acc[r][c], bv), o + r * J + c0 + 8 * c,
                    x + r * ldx + c0 + 8 * c, dsum + 8 * r);
    }
}

INLINE void axpy_panel(int C, int dt, int last, long rows, long K, long J, const float *a,
                       const void *w, long c0, const float *bias, float *o, const float *x,
                       long ldx, float *dsum) {
    long r = 0;
    /* the first tile fetches the next panel */
    int ahead = rows <= PANEL_PREFETCH_ROWS && c0 + 16 * C <= J;
#define TILE(R) axpy_tile(R, C, dt, last, K, J, a + r * K, w, c0, bias, o + r * J, x + r * ldx, \
                          ldx, dsum + 8 * r, ahead)
    for (; r + 6 <= rows; r += 6, ahead = 0) TILE(6);
    if (rows - r >= 4) { TILE(4); r += 4; ahead = 0; }
    if (rows - r >= 2) { TILE(2); r += 2; ahead = 0; }
    if (rows - r == 1) TILE(1);
#undef TILE
}

/* Few rows: stream each weight row once, contiguously (the memory-bound case), accumulating
 * z in buf (rows, J). */
INLINE void axpy_stream(int dt, int last, long rows, long K, long J, const float *a,
                        const void *w, const float *bias, float *o, const float *x, long ldx,
                        float *dsum, float *z) {
    for (long r = 0; r < rows; r++) memcpy(z + r * J, bias, J * sizeof(float));
    for (long k = 0; k < K; k++) {
        long c = 0;
        for (; c + 8 <= J; c += 8) {
            prefetch(w, k * J + c, dt);
            __m256 wv = load8(w, k * J + c, dt);
            for (long r = 0; r < rows; r++) {
                __m256 av = _mm256_broadcast_ss(a + r * K + k);
                _mm256_storeu_ps(z + r * J + c, _mm256_fmadd_ps(av, wv, _mm256_loadu_ps(z + r * J + c)));
            }
        }
        for (; c < J; c++)
            for (long r = 0; r < rows; r++) z[r * J + c] += a[r * K + k] * load1(w, k * J + c, dt);
    }
    for (long r = 0; r < rows; r++) {
        long c = 0;
        for (; c + 8 <= J; c += 8) finish8(last, _mm256_loadu_ps(z + r * J + c), o + r * J + c, x + r * ldx + c, dsum + 8 * r);
        for (; c < J; c++) finish1(last, z[r * J + c], o + r * J + c, x + r * ldx + c, dsum + 8 * r);
    }
}

/* One later layer for a block of rows; the last layer leaves each row's distance in dist. */
INLINE void axpy_layer(int dt, int last, long rows, long K, long J, const float *a,
                       const void *w, const float *bias, float *o, const float *x, long ldx,
                       float *dist, float *dsum, float *z) {
    memset(dsum, 0, rows * 8 * sizeof(float));
    if (rows <= STREAM_ROWS) {
        axpy_stream(dt, last, rows, K, J, a, w, bias, o, x, ldx, dsum, z);
    } else {
        long c = 0;
        for (; c + 16 <= J; c += 16) axpy_panel(2, dt, last, rows, K, J, a, w, c, bias, o, x, ldx, dsum);
        for (; c + 8 <= J; c += 8) axpy_panel(1, dt, last, rows, K, J, a, w, c, bias, o, x, ldx, dsum);
        for (; c < J; c++)
            for (long r = 0; r < rows; r++) {
                float s = bias[c];
                for (long k = 0; k < K; k++) s += a[r * K + k] * load1(w, k * J + c, dt);
                finish1(last, s, o + r * J + c, x + r * ldx + c, dsum + 8 * r);
            }
    }
    if (last)
        for (long r = 0; r < rows; r++) {
            float s = 0.0f;
            for (int i = 0; i < 8; i++) s += dsum[8 * r + i];
            dist[r] = s;
        }
}

/* Later layers and the tail of model m for a block of rows whose first-layer activations are in
 * h0; buf and z are scratch. */
INLINE void later_layers(int dt, int n_layers, const long *dims, const void *const *weights,
                         const float *const *biases, long m, long rows, const float *x,
                         const float *h0, float *buf0, float *buf1, float *z, float *dsum,
                         float *dist) {
    const long size = dt == F32 ? 4 : 2;
    const float *cur = h0;
    float *nxt = buf0, *spare = buf1;
    for (int l = 1; l < n_layers; l++) {
        const char *wl = (const char *)weights[l] + m * dims[l] * dims[l + 1] * size;
        const float *bl = biases[l] + m * dims[l + 1];
        axpy_layer(dt, l == n_layers - 1, rows, dims[l], dims[l + 1], cur, wl, bl, nxt, x,
                   dims[0], dist, dsum, z);
        cur = nxt;
        nxt = spare;
        spare = (float *)cur;
    }
}

/* One input: the first layer of GEMV_MODELS consecutive models is one contiguous (models * h1, D)
 * matrix, read as a single GEMV before their later layers, so the weights stream in long runs
 * (one thread, paired runs against one model at a time: +2-21% paper shape, +10-16% default;
 * 64 models measured no better than 16). */
#ifndef GEMV_MODELS
#define GEMV_MODELS 16
#endif

INLINE void models(int dt, int n_layers, const long *dims, const void *const *weights,
                   const float *const *biases, long m0, long m1, const float *x, long batch,
                   long block, float *out, float *scratch, long widest) {
    const long size = dt == F32 ? 4 : 2, D = dims[0], H = dims[1];
    float *buf0 = scratch, *buf1 = buf0 + block * widest, *z = buf1 + block * widest;
    float *dsum = z + STREAM_ROWS * widest, *dist = dsum + 8 * block, *h0 = dist + block;
    if (batch == 1 && GEMV_MODELS > 1) {
        for (long c0 = m0; c0 < m1; c0 += GEMV_MODELS) {
            long count = m1 - c0 < GEMV_MODELS ? m1 - c0 : GEMV_MODELS;
            const char *w0 = (const char *)weights[0] + c0 * H * D * size;
            dot_layer(dt, 1, D, count * H, x, w0, biases[0] + c0 * H, h0);
            for (long i = 0; i < count; i++) {
                later_layers(dt, n_layers, dims, weights, biases, c0 + i, 1, x, h0 + i * H, buf0,
                             buf1, z, dsum, dist);
                out[c0 + i] = dist[0];
            }
        }
        return;
    }
    for (long m = m0; m < m1; m++) {
        for (long b0 = 0; b0 < batch; b0 += block) {
            long rows = batch - b0 < block ? batch - b0 : block;
            const char *w0 = (const char *)weights[0] + m * H * D * size;
            dot_layer(dt, rows, D, H, x + b0 * D, w0, biases[0] + m * H, h0);
            later_layers(dt, n_layers, dims, weights, biases, m, rows, x + b0 * D, h0, buf0,
                         buf1, z, dsum, dist);
            memcpy(out + m * batch + b0, dist, rows * sizeof(float));
        }
    }
}

/* Distances of x (batch, dims[0]) to models m0..m1-1 of one stack; 0 on success. */
static float *scratch_for(int n_layers, const long *dims, long block, long *widest) {
    *widest = 1;
    for (int l = 1; l <= n_layers; l++) *widest = dims[l] > *widest ? dims[l] : *widest;
    long first = block * dims[1] > GEMV_MODELS * dims[1] ? block * dims[1] : GEMV_MODELS * dims[1];
    return malloc(sizeof(float) * ((2 * block + STREAM_ROWS) * *widest + 9 * block + first));
}

static void run_models(int dtype, int n_layers, const long *dims, const void *const *weights,
                       const float *const *biases, long m0, long m1, const float *x, long batch,
                       long block, float *out, float *scratch, long widest) {
    if (dtype == F32)
        models(F32, n_layers, dims, weights, biases, m0, m1, x, batch, block, out, scratch, widest);
    else if (dtype == F16)
        models(F16, n_layers, dims, weights, biases, m0, m1, x, batch, block, out, scratch, widest);
    else
        models(BF16, n_layers, dims, weights, biases, m0, m1, x, batch, block, out, scratch, widest);
}

int imgp_bank_distances(int dtype, int n_layers, const long *dims, const void *const *weights,
                        const float *const *biases, long m0, long m1, const float *x, long batch,
                        long block, float *out) {
    if (n_layers < 2 || block < 1 || dtype < F32 || dtype > BF16) return 1;
    long widest;
    float *scratch = scratch_for(n_layers, dims, block, &widest);
    if (!scratch) return 2;
    run_models(dtype, n_layers, dims, weights, biases, m0, m1, x, batch, block, out, scratch, widest);
    free(scratch);
    return 0;
}

/* The models of ranges bounds[c] .. bounds[c + 1] (c < n_ranges), each range claimed in turn from
 * the shared counter *next: threads running this at once share the ranges by how fast each goes,
 * and none waits on another (nor on Python's GIL) between ranges. */
int imgp_bank_distances_claimed(int dtype, int n_layers, const long *dims,
                                const void *const *weights, const float *const *biases,
                                const long *bounds, long n_ranges, long *next, const float *x,
                                long batch, long block, float *out) {
    if (n_layers < 2 || block < 1 || dtype < F32 || dtype > BF16) return 1;
    long widest;
    float *scratch = scratch_for(n_layers, dims, block, &widest);
    if (!scratch) return 2;
    for (long c; (c = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED)) < n_ranges;)
        run_models(dtype, n_layers, dims, weights, biases, bounds[c], bounds[c + 1], x, batch,
                   block, out, scratch, widest);
    free(scratch);
    return 0;
}

/* The last layer and the distance tail only, for hidden activations a (m1 - m0, batch, K) that
 * another library computed; w and bias point at model m0's last layer (K, J) and (J,). */
int imgp_bank_last_layer(int dtype, long K, long J, const void *w, const float *bias, long models,
                         const float *a, const float *x, long batch, long block, float *out) {
    if (block < 1 || dtype < F32 || dtype > BF16) return 1;
    float *scratch = malloc(sizeof(float) * (STREAM_ROWS * J + 9 * block));
    if (!scratch) return 2;
    float *z = scratch, *dsum = z + STREAM_ROWS * J, *dist = dsum + 8 * block;
    const long size = dtype == F32 ? 4 : 2;
    for (long m = 0; m < models; m++) {
        const char *wm = (const char *)w + m * K * J * size;
        for (long b0 = 0; b0 < batch; b0 += block) {
            long rows = batch - b0 < block ? batch - b0 : block;
            const float *am = a + (m * batch + b0) * K;
            if (dtype == F32)
                axpy_layer(F32, 1, rows, K, J, am, wm, bias + m * J, 0, x + b0 * J, J, dist, dsum, z);
            else if (dtype == F16)
                axpy_layer(F16, 1, rows, K, J, am, wm, bias + m * J, 0, x + b0 * J, J, dist, dsum, z);
            else
                axpy_layer(BF16, 1, rows, K, J, am, wm, bias + m * J, 0, x + b0 * J, J, dist, dsum, z);
            memcpy(out + m * batch + b0, dist, rows * sizeof(float));
        }
    }
    free(scratch);
    return 0;
}
