// Scaled dot-product attention in CUDA C: a naive path and a fused (FlashAttention) path.
//
// For a batch of B independent heads, q (B, Lq, D), k (B, Lk, D), v (B, Lk, Dv):
//
//     s[b,i,j] = scale * q[b,i] . k[b,j] + mask[b,i,j]     (-inf where is_causal and j > i)
//     lse[b,i] = log(sum_j exp(s[b,i,j]))
//     out[b,i] = sum_j exp(s[b,i,j] - lse[b,i]) * v[b,j]
//
// A row whose every key is removed (all -inf) gives out = 0 and lse = -inf. The backward
// pass, from the saved out and lse, with P = exp(s - lse) and dO the gradient of out:
//
//     delta[b,i] = dO[b,i] . out[b,i]
//     dS[b,i,j]  = P[b,i,j] * (dO[b,i] . v[b,j] - delta[b,i])
//     dq[b,i] = scale * sum_j dS[b,i,j] k[b,j]     dk[b,j] = scale * sum_i dS[b,i,j] q[b,i]
//     dv[b,j] = sum_i P[b,i,j] dO[b,i]
//
// The naive path runs the formula as written: one kernel writes every score s (an Lq x Lk
// matrix per head), one turns each row into probabilities, one takes the weighted sum of v.
// The Lq x Lk matrix costs memory and, worse, trips to memory: the scores are written,
// read back and overwritten by the probabilities, which are read again for the weighted
// sum. The fused path never builds it: it streams k and v through shared memory in tiles
// and keeps a running ("online") softmax, so each score lives only in a register.
//
// Warps. The fused kernels are written around the warp, the 32 threads of a block that
// execute together (threadIdx.x / 32 is the warp, threadIdx.x % 32 the lane). A warp owns
// one row (a query, or in dk/dv a key) and each of its lanes takes one element of the tile
// streamed past it; the lanes then trade values with __shfl_sync, which reads a register of
// another lane of the warp without going through memory. Every lane of a warp must reach
// each __shfl_sync (the 0xffffffff says all 32 take part), so those calls are never put
// inside a branch that only some lanes take. See conv.cu for kernels, threads and blocks.
//
// Every array is C-contiguous; mask is (B, Lq, Lk), additive, and ignored when has_mask is
// 0. No kernel uses atomics: every sum runs in a fixed order, so results are bit-identical
// from run to run.

#include "float_bits.cuh"  // negative_infinity

constexpr unsigned ALL_LANES = 0xffffffffu;
constexpr int WARP = 32;

// Head dimensions up to this many fit the fused kernels' shared-memory tiles. Each lane
// holds DIMS_PER_LANE of a row's output dimensions: lane l holds l, l + 32, l + 64, l + 96.
constexpr int MAX_HEAD_DIM = 128;
constexpr int DIMS_PER_LANE = MAX_HEAD_DIM / WARP;

// Tile sizes of the fused kernels, per element type. ROWS is the number of rows a block
// owns, one per warp; TILE is the length of a tile streamed through shared memory, one
// element per lane. Doubles take twice the bytes, so their tiles are halved to stay within
// the 48 KiB of shared memory a block gets by default.
template <typename T> struct AttentionTile;
template <> struct AttentionTile<float> {
    static constexpr int ROWS = 8;
    static constexpr int TILE = 32;
};
template <> struct AttentionTile<double> {
    static constexpr int ROWS = 4;
    static constexpr int TILE = 16;
};

// a . b over n elements, always added in the order 0, 1, ..., n-1, so the backward
// kernels recompute exactly the scores the forward kernel computed.
template <typename T>
__device__ __forceinline__ T dot(const T* a, const T* b, int n)
{
    T sum = T(0);
    for (int d = 0; d < n; ++d) {
        sum += a[d] * b[d];
    }
    return sum;
}

// s[b,i,j] from the dot product q[b,i] . k[b,j]: scaled, masked, causally removed.
// mask_bi points at mask[b,i,0].
template <typename T>
__device__ __forceinline__ T score(T qk, T scale, const T* mask_bi, int has_mask,
                                   int is_causal, int i, int j)
{
    if (is_causal && j > i) {
        return negative_infinity<T>();
    }
    const T s = scale * qk;
    return has_mask ? s + mask_bi[j] : s;
}

// The maximum and the sum of a value over the 32 lanes of a warp. In the "butterfly" each
// lane combines its value with the lane whose number differs in one bit, for bits 16, 8,
// ..., 1; after five steps every lane holds the result. Partners compute x + y and y + x,
// which are equal, so all 32 lanes hold the very same bits.
template <typename T>
__device__ __forceinline__ T warp_max(T value)
{
    for (int offset = WARP / 2; offset > 0; offset /= 2) {
        value = max(value, __shfl_xor_sync(ALL_LANES, value, offset));
    }
    return value;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T value)
{
    for (int offset = WARP / 2; offset > 0; offset /= 2) {
        value += __shfl_xor_sync(ALL_LANES, value, offset);
    }
    return value;
}

// Copy rows first .. first+count-1 of a (rows x n) matrix into a shared tile with row
// stride `stride`; rows past `rows` become zeros. Element e goes to thread e mod blockDim,
// so neighbouring threads copy neighbouring addresses (one memory transaction per warp).
template <typename T>
__device__ __forceinline__ void load_rows(T* tile, int stride, const T* matrix, int first,
                                          int count, int rows, int n)
{
    for (int e = threadIdx.x; e < count * n; e += blockDim.x) {
        const int r = e / n;
        const int d = e % n;
        tile[r * stride + d] = first + r < rows ? matrix[(size_t)(first + r) * n + d] : T(0);
    }
}

// A shared tile read row-wise by the 32 lanes at once (lane l reads row l, column d) gets
// an odd row stride: rows then start in different memory banks and the 32 reads are served
// together instead of one after another. n | 1 is the smallest odd number >= n.
__device__ __forceinline__ int odd_stride(int n)
{
    return n | 1;
}

// Where a thread stands in a fused kernel's grid. The grid has ceil(length / ROWS) blocks per
// head b; block t of head b owns the rows first_row = t * ROWS onwards (queries, or in dk/dv
// keys), one warp per row, and lane is the thread's place in its warp.
struct WarpOfThread {
    int b;
    int first_row;
    int warp;
    int lane;
};

template <int ROWS>
__device__ __forceinline__ WarpOfThread warp_of_thread(int length)
{
    // Divided as unsigned numbers, which blockIdx and threadIdx are: that takes fewer
    // instructions and registers than signed division.
    const unsigned tiles = (length + ROWS - 1) / ROWS;
    return {static_cast<int>(blockIdx.x / tiles), static_cast<int>(blockIdx.x % tiles) * ROWS,
            static_cast<int>(threadIdx.x / WARP), static_cast<int>(threadIdx.x % WARP)};
}

// How many keys, from key 0, the queries up to last_query see: with is_causal query i sees
// the keys j <= i only, so a block's walk over the keys can stop after its last query.
__device__ __forceinline__ int keys_seen(int Lk, int last_query, int is_causal)
{
    return is_causal ? min(Lk, last_query + 1) : Lk;
}

// A fused kernel keeps a row it is summing (of out, dq, dk or dv; up to MAX_HEAD_DIM values)
// in the registers of a warp: lane l holds dimensions l, l + 32, l + 64, l + 96 in
// acc[0 .. 3]. These three helpers each work on one lane's share of such a row of length n.
template <typename T>
__device__ __forceinline__ void clear(T (&acc)[DIMS_PER_LANE])
{
#pragma unroll
    for (int r = 0; r < DIMS_PER_LANE; ++r) {
        acc[r] = T(0);
    }
}

// acc += weight * row, for a row of shared memory (a key, value, query or dO of the tile).
template <typename T>
__device__ __forceinline__ void add_scaled(T (&acc)[DIMS_PER_LANE], T weight, const T* row, int n,
                                           int lane)
{
#pragma unroll
    for (int r = 0; r < DIMS_PER_LANE; ++r) {
        const int d = lane + WARP * r;
        if (d < n) {
            acc[r] += weight * row[d];
        }
    }
}

// row = factor * acc, for the row's place in a gradient in global memory.
template <typename T>
__device__ __forceinline__ void store_scaled(T* row, const T (&acc)[DIMS_PER_LANE], T factor, int n,
                                             int lane)
{
#pragma unroll
    for (int r = 0; r < DIMS_PER_LANE; ++r) {
        const int d = lane + WARP * r;
        if (d < n) {
            row[d] = factor * acc[r];
        }
    }
}

// ---------------------------------------------------------------------------------------
// The naive path
// ---------------------------------------------------------------------------------------

// s[b,i,j] for every (b, i, j): one thread each, j fastest. Launch with at least
// B * Lq * Lk threads in a 1-D grid.
template <typename T>
__global__ void attention_scores(const T* q, const T* k, const T* mask, int has_mask,
                                 int is_causal, T scale, T* s, int B, int Lq, int Lk, int D)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= B * Lq * Lk) {
        return;
    }
    const int j = t % Lk;
    const int i = (t / Lk) % Lq;
    const int b = t / (Lk * Lq);
    const T qk = dot(q + ((size_t)b * Lq + i) * D, k + ((size_t)b * Lk + j) * D, D);
    s[t] = score(qk, scale, mask + ((size_t)b * Lq + i) * Lk, has_mask, is_causal, i, j);
}

// Turn each row of s into probabilities, in place, and write its log-sum-exp: one warp per
// row. Softmax is shift-invariant, so the row maximum m is subtracted before exp (exp of a
// large score would overflow): p_j = exp(s_j - m) / l with l = sum_j exp(s_j - m), and
// lse = m + log(l). Lane l handles the entries l, l + 32, ... and the warp combines its
// lanes' partial results. Launch with at least rows * 32 threads, blocks a multiple of 32.
template <typename T>
__global__ void attention_softmax_rows(T* s, T* lse, int rows, int Lk)
{
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) / WARP;
    const int lane = threadIdx.x % WARP;
    if (row >= rows) {
        return;  // whole warps leave together, so no lane misses a shuffle
    }
    T* s_row = s + (size_t)row * Lk;

    T m = negative_infinity<T>();
    for (int j = lane; j < Lk; j += WARP) {
        m = max(m, s_row[j]);
    }
    m = warp_max(m);
    if (m == negative_infinity<T>()) {  // every key removed: "safe softmax" gives zeros
        for (int j = lane; j < Lk; j += WARP) {
            s_row[j] = T(0);
        }
        if (lane == 0) {
            lse[row] = m;
        }
        return;
    }
    T l = T(0);
    for (int j = lane; j < Lk; j += WARP) {
        l += exp(s_row[j] - m);
    }
    l = warp_sum(l);
    for (int j = lane; j < Lk; j += WARP) {
        s_row[j] = exp(s_row[j] - m) / l;
    }
    if (lane == 0) {
        lse[row] = m + log(l);
    }
}

// out[b,i,d] = sum_j p[b,i,j] * v[b,j,d]: one thread per output element, d fastest.
// Launch with at least B * Lq * Dv threads in a 1-D grid.
template <typename T>
__global__ void attention_weighted_sum(const T* p, const T* v, T* out, int B, int Lq, int Lk,
                                       int Dv)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= B * Lq * Dv) {
        return;
    }
    const int d = t % Dv;
    const int i = (t / Dv) % Lq;
    const int b = t / (Dv * Lq);
    const T* p_row = p + ((size_t)b * Lq + i) * Lk;
    const T* v_b = v + (size_t)b * Lk * Dv;
    T sum = T(0);
    for (int j = 0; j < Lk; ++j) {
        sum += p_row[j] * v_b[(size_t)j * Dv + d];
    }
    out[t] = sum;
}

// ---------------------------------------------------------------------------------------
// The fused path
// ---------------------------------------------------------------------------------------

// out and lse with an online softmax, never storing a row of scores.
// Block (b, query tile) owns the ROWS queries row0 .. row0+ROWS-1 of head b, one per warp.
// It walks the keys in tiles of TILE: the block copies the tile's keys and values into
// shared memory (each is read from global memory once per block, then used by all ROWS
// queries), lane l of each warp computes the score of key k0 + l against its query, and the
// warp folds the tile into its running softmax. For its query the warp keeps
//     m    the largest score seen so far,
//     l    sum_j exp(s_j - m) over the keys seen so far,
//     acc  sum_j exp(s_j - m) v_j   (lane l holds dimensions l, l+32, ...).
// When a tile raises the maximum from m to m', every term seen so far is rescaled by
// exp(m - m'): that is the online softmax. At the end out = acc / l, lse = m + log(l).
// With is_causal the keys after the block's last query are removed for all its queries,
// so the walk stops there. Launch ceil(Lq / ROWS) * B blocks of ROWS * 32 threads.
template <typename T>
__global__ void attention_fused_forward(const T* q, const T* k, const T* v, const T* mask,
                                        int has_mask, int is_causal, T scale, T* out, T* lse,
                                        int Lq, int Lk, int D, int Dv)
{
    constexpr int ROWS = AttentionTile<T>::ROWS;
    constexpr int TILE = AttentionTile<T>::TILE;
    __shared__ T q_rows[ROWS * MAX_HEAD_DIM];
    __shared__ T k_tile[TILE * (MAX_HEAD_DIM + 1)];
    __shared__ T v_tile[TILE * (MAX_HEAD_DIM + 1)];

    const auto [b, row0, warp, lane] = warp_of_thread<ROWS>(Lq);
    const int i = row0 + warp;  // this warp's query
    const bool row_valid = i < Lq;
    const int k_stride = odd_stride(D);
    const T* k_b = k + (size_t)b * Lk * D;
    const T* v_b = v + (size_t)b * Lk * Dv;
    const T* mask_bi = mask + ((size_t)b * Lq + i) * Lk;

    load_rows(q_rows, D, q + (size_t)b * Lq * D, row0, ROWS, Lq, D);

    T m = negative_infinity<T>();
    T l = T(0);
    T acc[DIMS_PER_LANE];
    clear(acc);

    const int key_end = keys_seen(Lk, row0 + ROWS - 1, is_causal);
    for (int k0 = 0; k0 < key_end; k0 += TILE) {
        __syncthreads();  // the previous tile is used up (and q_rows written) before the copy
        load_rows(k_tile, k_stride, k_b, k0, TILE, Lk, D);
        load_rows(v_tile, Dv, v_b, k0, TILE, Lk, Dv);
        __syncthreads();  // the tile is complete before anyone reads it

        // 1. Lane l scores key j = k0 + l (-inf when there is no such key or it is removed).
        const int j = k0 + lane;
        T s = negative_infinity<T>();
        if (row_valid && lane < TILE && j < Lk) {
            const T qk = dot(q_rows + warp * D, k_tile + lane * k_stride, D);
            s = score(qk, scale, mask_bi, has_mask, is_causal, i, j);
        }

        // 2. Fold the tile into the running softmax.
        const T m_new = max(m, warp_max(s));
        if (m_new == negative_infinity<T>()) {
            continue;  // nothing kept so far; the whole warp agrees, since m_new is shared
        }
        const T rescale = exp(m - m_new);  // exp(-inf) = 0 the first time anything is kept
        const T p = exp(s - m_new);        // this lane's key's weight; 0 for a removed key
        l = l * rescale + warp_sum(p);
#pragma unroll
        for (int r = 0; r < DIMS_PER_LANE; ++r) {
            acc[r] *= rescale;
        }
        for (int jj = 0; jj < TILE; ++jj) {
            const T p_jj = __shfl_sync(ALL_LANES, p, jj);  // key jj's weight, from lane jj
            add_scaled(acc, p_jj, v_tile + jj * Dv, Dv, lane);
        }
        m = m_new;
    }

    if (!row_valid) {
        return;
    }
    // l >= 1 once any key is kept (the largest key contributes exp(0)); l == 0 means none.
    T* out_row = out + ((size_t)b * Lq + i) * Dv;
#pragma unroll
    for (int r = 0; r < DIMS_PER_LANE; ++r) {
        const int d = lane + WARP * r;
        if (d < Dv) {
            out_row[d] = l > T(0) ? acc[r] / l : T(0);
        }
    }
    if (lane == 0) {
        lse[(size_t)b * Lq + i] = l > T(0) ? m + log(l) : negative_infinity<T>();
    }
}

// delta[row] = dO[row] . out[row] for every row (b, i): one warp per row, lane l adding
// the dimensions l, l+32, ..., then the warp adding its lanes. Launch with at least
// rows * 32 threads, blocks a multiple of 32.
template <typename T>
__global__ void attention_backward_delta(const T* grad_out, const T* out, T* delta, int rows,
                                         int Dv)
{
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) / WARP;
    const int lane = threadIdx.x % WARP;
    if (row >= rows) {
        return;  // whole warps leave together
    }
    T sum = T(0);
    for (int d = lane; d < Dv; d += WARP) {
        sum += grad_out[(size_t)row * Dv + d] * out[(size_t)row * Dv + d];
    }
    sum = warp_sum(sum);
    if (lane == 0) {
        delta[row] = sum;
    }
}

// dk and dv: block (b, key tile) owns the ROWS keys key0 .. key0+ROWS-1, one per warp, and
// walks the queries in tiles of TILE (the forward pass turned on its side). For each tile
// lane l recomputes, for query i = i0 + l and the warp's key j, the probability
// P = exp(s - lse_i) and dS = P (dO_i . v_j - delta_i); the warp then adds
//     dv_j += P dO_i   and   dk_j += dS q_i
// over the tile's queries in order. A key's sums are owned by one warp, so no two threads
// ever add into the same dk or dv: no atomics. With is_causal, queries before the block's
// first key see none of its keys, so the walk starts at the tile holding key0.
// Launch ceil(Lk / ROWS) * B blocks of ROWS * 32 threads.
template <typename T>
__global__ void attention_fused_backward_dkdv(const T* grad_out, const T* q, const T* k,
                                              const T* v, const T* lse, const T* delta,
                                              const T* mask, int has_mask, int is_causal,
                                              T scale, T* grad_k, T* grad_v, int Lq, int Lk,
                                              int D, int Dv)
{
    constexpr int ROWS = AttentionTile<T>::ROWS;
    constexpr int TILE = AttentionTile<T>::TILE;
    __shared__ T k_rows[ROWS * MAX_HEAD_DIM];
    __shared__ T v_rows[ROWS * MAX_HEAD_DIM];
    __shared__ T q_tile[TILE * (MAX_HEAD_DIM + 1)];
    __shared__ T go_tile[TILE * (MAX_HEAD_DIM + 1)];

    const auto [b, key0, warp, lane] = warp_of_thread<ROWS>(Lk);
    const int j = key0 + warp;  // this warp's key
    const bool key_valid = j < Lk;
    const int q_stride = odd_stride(D);
    const int go_stride = odd_stride(Dv);
    const T* q_b = q + (size_t)b * Lq * D;
    const T* go_b = grad_out + (size_t)b * Lq * Dv;
    const T* lse_b = lse + (size_t)b * Lq;
    const T* delta_b = delta + (size_t)b * Lq;

    load_rows(k_rows, D, k + (size_t)b * Lk * D, key0, ROWS, Lk, D);
    load_rows(v_rows, Dv, v + (size_t)b * Lk * Dv, key0, ROWS, Lk, Dv);

    T dk[DIMS_PER_LANE];
    T dv[DIMS_PER_LANE];
    clear(dk);
    clear(dv);

    const int query_begin = is_causal ? key0 / TILE * TILE : 0;
    for (int i0 = query_begin; i0 < Lq; i0 += TILE) {
        __syncthreads();  // the previous tile is used up (and k_rows, v_rows written)
        load_rows(q_tile, q_stride, q_b, i0, TILE, Lq, D);
        load_rows(go_tile, go_stride, go_b, i0, TILE, Lq, Dv);
        __syncthreads();

        // Lane l: P and dS for query i = i0 + l and this warp's key (0 when i does not
        // exist, the key is removed, or every key of row i is removed: lse = -inf).
        const int i = i0 + lane;
        T p = T(0);
        T ds = T(0);
        if (key_valid && lane < TILE && i < Lq && lse_b[i] != negative_infinity<T>()) {
            const T qk = dot(q_tile + lane * q_stride, k_rows + warp * D, D);
            const T s = score(qk, scale, mask + ((size_t)b * Lq + i) * Lk, has_mask,
                              is_causal, i, j);
            p = exp(s - lse_b[i]);
            const T dp = dot(go_tile + lane * go_stride, v_rows + warp * Dv, Dv);
            ds = p * (dp - delta_b[i]);
        }

        for (int ii = 0; ii < TILE; ++ii) {
            const T p_ii = __shfl_sync(ALL_LANES, p, ii);
            const T ds_ii = __shfl_sync(ALL_LANES, ds, ii);
            add_scaled(dv, p_ii, go_tile + ii * go_stride, Dv, lane);   // dv_j += P dO_i
            add_scaled(dk, ds_ii, q_tile + ii * q_stride, D, lane);     // dk_j += dS q_i
        }
    }

    if (!key_valid) {
        return;
    }
    store_scaled(grad_k + ((size_t)b * Lk + j) * D, dk, scale, D, lane);
    store_scaled(grad_v + ((size_t)b * Lk + j) * Dv, dv, T(1), Dv, lane);
}

// dq: block (b, query tile) owns ROWS queries, one per warp, and walks the keys in tiles of
// TILE like the forward pass. Lane l recomputes P and dS for the warp's query and key
// k0 + l, and the warp adds dq_i += dS k_j over the tile's keys in order. Each query's sum
// is owned by one warp: no atomics. Launch ceil(Lq / ROWS) * B blocks of ROWS * 32 threads.
template <typename T>
__global__ void attention_fused_backward_dq(const T* grad_out, const T* q, const T* k,
                                            const T* v, const T* lse, const T* delta,
                                            const T* mask, int has_mask, int is_causal,
                                            T scale, T* grad_q, int Lq, int Lk, int D, int Dv)
{
    constexpr int ROWS = AttentionTile<T>::ROWS;
    constexpr int TILE = AttentionTile<T>::TILE;
    __shared__ T q_rows[ROWS * MAX_HEAD_DIM];
    __shared__ T go_rows[ROWS * MAX_HEAD_DIM];
    __shared__ T k_tile[TILE * (MAX_HEAD_DIM + 1)];
    __shared__ T v_tile[TILE * (MAX_HEAD_DIM + 1)];

    const auto [b, row0, warp, lane] = warp_of_thread<ROWS>(Lq);
    const int i = row0 + warp;  // this warp's query
    const int k_stride = odd_stride(D);
    const int v_stride = odd_stride(Dv);
    const T* k_b = k + (size_t)b * Lk * D;
    const T* v_b = v + (size_t)b * Lk * Dv;
    const T* mask_bi = mask + ((size_t)b * Lq + i) * Lk;
    // A row with every key removed (lse = -inf) has no gradient: dq stays 0.
    const bool row_live = i < Lq && lse[(size_t)b * Lq + i] != negative_infinity<T>();
    const T lse_i = row_live ? lse[(size_t)b * Lq + i] : T(0);
    const T delta_i = row_live ? delta[(size_t)b * Lq + i] : T(0);

    load_rows(q_rows, D, q + (size_t)b * Lq * D, row0, ROWS, Lq, D);
    load_rows(go_rows, Dv, grad_out + (size_t)b * Lq * Dv, row0, ROWS, Lq, Dv);

    T dq[DIMS_PER_LANE];
    clear(dq);

    const int key_end = keys_seen(Lk, row0 + ROWS - 1, is_causal);
    for (int k0 = 0; k0 < key_end; k0 += TILE) {
        __syncthreads();
        load_rows(k_tile, k_stride, k_b, k0, TILE, Lk, D);
        load_rows(v_tile, v_stride, v_b, k0, TILE, Lk, Dv);
        __syncthreads();

        const int j = k0 + lane;
        T ds = T(0);
        if (row_live && lane < TILE && j < Lk) {
            const T qk = dot(q_rows + warp * D, k_tile + lane * k_stride, D);
            const T s = score(qk, scale, mask_bi, has_mask, is_causal, i, j);
            const T p = exp(s - lse_i);
            const T dp = dot(go_rows + warp * Dv, v_tile + lane * v_stride, Dv);
            ds = p * (dp - delta_i);
        }

        for (int jj = 0; jj < TILE; ++jj) {
            const T ds_jj = __shfl_sync(ALL_LANES, ds, jj);
            add_scaled(dq, ds_jj, k_tile + jj * k_stride, D, lane);  // dq_i += dS k_j
        }
    }

    if (i >= Lq) {
        return;
    }
    store_scaled(grad_q + ((size_t)b * Lq + i) * D, dq, scale, D, lane);
}
