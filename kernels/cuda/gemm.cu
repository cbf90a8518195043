// The affine formula y = W x + b as one matrix product with the bias fused in:
//
//     c[m, n] = sum_k op(a)[m, k] * op(b)[k, n] + bias[n]
//
// where op(a) is a (M x K, stored row-major) or, with trans_a, a.T (a stored K x M); op(b)
// is b (K x N) or, with trans_b, b.T (b stored N x K). F.linear's forward is
// gemm(x, W, bias, trans_b) and its two backward products are gemm(gy, W) and
// gemm(gy, x, trans_a). See conv.cu for a first introduction to kernels, threads, blocks.
//
// Why tiles. Computed naively, each c[m, n] reads a whole row of a and a whole column of b
// from global memory: 2K loads for K multiply-adds, and memory is ~50x slower than the
// arithmetic units. But neighbouring outputs share those rows and columns. So a block of
// 256 threads computes a 64 x 64 tile of c, and walks along K in steps of 16: at each step
// the block copies a 64 x 16 slice of op(a) and a 16 x 64 slice of op(b) into shared memory
// (each element is loaded from global memory once and then read 64 times), and every thread
// computes a 4 x 4 patch of the tile from there, holding its 16 running sums in registers.
// Edges: rows, columns and K indices past the end are read as zeros and never written, so
// no size needs to be a multiple of the tile.
//
// Split-K. A thin product (few tiles of c, long K; e.g. a 64 x 1 output with K = 6272)
// would give the GPU only a block or two to run, each walking all of K alone. The launcher
// can then cut K into gridDim.z equal chunks: block z writes its partial tile to
// c[z, :, :] (no bias), and gemm_sum_splits adds the chunks in the fixed order z = 0, 1, ...
// plus the bias. Every sum still runs in a fixed order, so results stay bit-identical from
// run to run (the launcher picks the number of chunks from the shapes and the device only).

constexpr int GEMM_TILE = 64;        // rows and columns of c per block
constexpr int GEMM_K_STEP = 16;      // depth of the slices copied per step
constexpr int GEMM_THREADS_SIDE = 16;  // 16 x 16 = 256 threads per block
constexpr int GEMM_PER_THREAD = GEMM_TILE / GEMM_THREADS_SIDE;  // 4 x 4 outputs per thread

// Copy a GEMM_TILE x GEMM_K_STEP slice of an (R x K) matrix X into shared memory:
// slice[k][r] = X[r0 + r, k0 + k], with zeros past row R or past column k_end. Both operands
// are read this way: op(a) is M x K, and op(b) read column by column is the N x K matrix
// op(b).T. X is stored row by row (X[r, k] at x[r*K + k]; "k_contiguous") or column by column
// (at x[k*R + r]). Element e of the slice goes to the thread e mod 256, and e is unflattened
// so that neighbouring threads read neighbouring addresses of x whichever way it is stored,
// which a warp then fetches in one memory transaction.
template <typename T>
__device__ __forceinline__ void load_slice(T (*slice)[GEMM_TILE + 1], const T* x,
                                           bool k_contiguous, int r0, int R, int k0, int k_end,
                                           int K)
{
    for (int e = threadIdx.x; e < GEMM_TILE * GEMM_K_STEP; e += blockDim.x) {
        const int r = k_contiguous ? e / GEMM_K_STEP : e % GEMM_TILE;
        const int k = k_contiguous ? e % GEMM_K_STEP : e / GEMM_TILE;
        const int gr = r0 + r;
        const int gk = k0 + k;
        T value = T(0);
        if (gr < R && gk < k_end) {
            value = k_contiguous ? x[(size_t)gr * K + gk] : x[(size_t)gk * R + gr];
        }
        slice[k][r] = value;
    }
}

// One 64 x 64 tile of c (or of the partial product of K chunk blockIdx.z).
// Block blockIdx.x owns tile (blockIdx.x / column_tiles, blockIdx.x % column_tiles) of c: rows
// m0 .. m0+63 and columns n0 .. n0+63. (The tiles are numbered along x alone because a grid
// may have 2^31 - 1 blocks along x but only 65535 along y and z: a 1 x 5,000,000 product
// has 78,125 column tiles.) Thread
// (tx, ty) computes the rows m0 + ty + 16*r and columns n0 + tx + 16*s for r, s in 0..3:
// spreading its patch out (rather than 4 adjacent rows and columns) makes the 16 threads
// with the same ty read 16 adjacent shared-memory words, which the hardware serves at once,
// and write 16 adjacent words of c. Launch with grid (ceil(M/64) * ceil(N/64), 1, splits) and
// 256 threads; k_chunk is the length of each K chunk.
template <typename T>
__global__ void gemm_tiled(const T* a, const T* b, const T* bias, int has_bias, T* c,
                           int M, int N, int K, int trans_a, int trans_b, int k_chunk)
{
    // a_slice[k][m] = op(a)[m0 + m, k0 + k]; b_slice[k][n] = op(b)[k0 + k, n0 + n]. The +1
    // column of padding shifts each row to another memory bank, so the column-wise writes
    // of load_slice do not queue up on one bank.
    __shared__ T a_slice[GEMM_K_STEP][GEMM_TILE + 1];
    __shared__ T b_slice[GEMM_K_STEP][GEMM_TILE + 1];

    const int tx = threadIdx.x % GEMM_THREADS_SIDE;
    const int ty = threadIdx.x / GEMM_THREADS_SIDE;
    const int column_tiles = (N + GEMM_TILE - 1) / GEMM_TILE;
    const int m0 = blockIdx.x / column_tiles * GEMM_TILE;
    const int n0 = blockIdx.x % column_tiles * GEMM_TILE;
    const int k_begin = blockIdx.z * k_chunk;
    const int k_end = min(K, k_begin + k_chunk);

    T acc[GEMM_PER_THREAD][GEMM_PER_THREAD];
#pragma unroll
    for (int r = 0; r < GEMM_PER_THREAD; ++r) {
#pragma unroll
        for (int s = 0; s < GEMM_PER_THREAD; ++s) {
            acc[r][s] = T(0);
        }
    }

    for (int k0 = k_begin; k0 < k_end; k0 += GEMM_K_STEP) {
        // a is stored M x K unless trans_a; b is stored K x N, so op(b).T is N x K stored
        // column by column, unless trans_b.
        load_slice(a_slice, a, !trans_a, m0, M, k0, k_end, K);
        load_slice(b_slice, b, trans_b, n0, N, k0, k_end, K);
        __syncthreads();  // the slices are complete before anyone reads them

#pragma unroll
        for (int k = 0; k < GEMM_K_STEP; ++k) {
            T a_reg[GEMM_PER_THREAD];
            T b_reg[GEMM_PER_THREAD];
#pragma unroll
            for (int r = 0; r < GEMM_PER_THREAD; ++r) {
                a_reg[r] = a_slice[k][ty + GEMM_THREADS_SIDE * r];
                b_reg[r] = b_slice[k][tx + GEMM_THREADS_SIDE * r];
            }
#pragma unroll
            for (int r = 0; r < GEMM_PER_THREAD; ++r) {
#pragma unroll
                for (int s = 0; s < GEMM_PER_THREAD; ++s) {
                    acc[r][s] += a_reg[r] * b_reg[s];
                }
            }
        }
        __syncthreads();  // everyone is done with the slices before the next copy
    }

    T* c_chunk = c + (size_t)blockIdx.z * M * N;
    const bool add_bias = has_bias && gridDim.z == 1;
#pragma unroll
    for (int r = 0; r < GEMM_PER_THREAD; ++r) {
        const int gm = m0 + ty + GEMM_THREADS_SIDE * r;
#pragma unroll
        for (int s = 0; s < GEMM_PER_THREAD; ++s) {
            const int gn = n0 + tx + GEMM_THREADS_SIDE * s;
            if (gm < M && gn < N) {
                c_chunk[(size_t)gm * N + gn] = add_bias ? acc[r][s] + bias[gn] : acc[r][s];
            }
        }
    }
}

// c[m, n] = sum_{z = 0 .. splits-1} partial[z, m, n] + bias[n], adding z in order.
// One thread per element of c. Launch with at least M * N threads in a 1-D grid.
template <typename T>
__global__ void gemm_sum_splits(const T* partial, const T* bias, int has_bias, T* c,
                                int splits, int M, int N)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= M * N) {
        return;
    }
    T sum = partial[t];
    for (int z = 1; z < splits; ++z) {
        sum += partial[(size_t)z * M * N + t];
    }
    c[t] = has_bias ? sum + bias[t % N] : sum;
}
