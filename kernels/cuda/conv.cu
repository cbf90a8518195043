// Convolution (cross-correlation, as PyTorch) in CUDA C: the forward pass and its two gradients.
//
// With x_pad the input padded by (ph, pw) zeros, stride (sh, sw) and dilation (dh, dw):
//
//     y[n,o,i,j]  = b[o] + sum_{c,p,q} w[o,c,p,q] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]
//     gx[n,c,h,w] = sum of gy[n,o,i,j] * w[o,c,p,q] over the (o,i,j,p,q) with
//                   i*sh + p*dh = h + ph  and  j*sw + q*dw = w + pw
//     gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]
//
// Reading CUDA for the first time: a __global__ function (a *kernel*) is run by thousands of
// threads at once. Threads come in *blocks* of up to 1024 that can share fast on-chip
// __shared__ memory and wait for each other with __syncthreads(); the blocks form the *grid*.
// blockIdx, blockDim and threadIdx tell a thread who it is, and so which piece of the output
// is its own. Each kernel here is a template, compiled once for float and once for double;
// the Python launcher (tinymed/backends/cupy_cuda.py) asks for "conv2d_forward<float>" etc.
//
// Every array is C-contiguous: x, y, gy, gx are NCHW, w and gw are (O, C, KH, KW). The
// padding is never built: a thread that would read x_pad outside the real input skips the
// term, since a padded zero adds nothing. No kernel uses atomics, so every sum runs in the
// same order on every run and results are bit-identical from run to run.

#include "windows.cuh"  // outputs_reaching, for the input gradient

// Each thread of the forward and input-gradient kernels computes this many output channels
// of one pixel. Loading an input value costs far more than the multiply-add that uses it, so
// the thread loads it once and uses it for all of its channels, from registers.
constexpr int CHANNELS_PER_THREAD = 4;

// Threads per block of the weight-gradient kernel; a power of two, for the tree reduction.
constexpr int GRAD_WEIGHT_THREADS = 256;

// The forward and input-gradient kernels are launched with blocks of BLOCK_THREADS threads.
// __launch_bounds__(BLOCK_THREADS, 4) tells the compiler so, and asks it to fit 4 such
// blocks on one multiprocessor (at most 64 registers per thread): while some warps wait
// for memory, the multiprocessor then has others ready to compute.
constexpr int BLOCK_THREADS = 256;

// y = conv2d(x, w) + b.
// Thread t owns the pixel (i, j) of image n in the output channels o0 .. o0+3: the 1-D thread
// number is unflattened into (n, channel group, i, j) with j fastest, so neighbouring threads
// of a warp (32 threads that execute together) read neighbouring input pixels, which the
// memory system serves in one transaction, and all read the same weight, which is broadcast.
// Launch with at least N * ceil(O/4) * OH * OW threads in a 1-D grid.
template <typename T>
__global__ void __launch_bounds__(BLOCK_THREADS, 4)
conv2d_forward(const T* x, const T* w, const T* bias, int has_bias, T* y, int N, int C, int H,
               int W, int O, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw,
               int dh, int dw)
{
    const int groups = (O + CHANNELS_PER_THREAD - 1) / CHANNELS_PER_THREAD;
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * groups * OH * OW) {
        return;  // the grid is rounded up to whole blocks; the spare threads stop here
    }
    const int j = t % OW;
    const int i = (t / OW) % OH;
    const int o0 = (t / (OW * OH)) % groups * CHANNELS_PER_THREAD;
    const int n = t / (OW * OH * groups);

    T acc[CHANNELS_PER_THREAD];
#pragma unroll
    for (int u = 0; u < CHANNELS_PER_THREAD; ++u) {
        acc[u] = (has_bias && o0 + u < O) ? bias[o0 + u] : T(0);
    }
    for (int c = 0; c < C; ++c) {
        const T* x_plane = x + ((size_t)n * C + c) * H * W;
        for (int p = 0; p < KH; ++p) {
            const int h = i * sh - ph + p * dh;  // input row of kernel row p
            if (h < 0 || h >= H) {
                continue;  // a padded zero
            }
            for (int q = 0; q < KW; ++q) {
                const int v = j * sw - pw + q * dw;
                if (v < 0 || v >= W) {
                    continue;
                }
                const T xv = x_plane[h * W + v];
#pragma unroll
                for (int u = 0; u < CHANNELS_PER_THREAD; ++u) {
                    if (o0 + u < O) {
                        acc[u] += xv * w[(((size_t)(o0 + u) * C + c) * KH + p) * KW + q];
                    }
                }
            }
        }
    }
#pragma unroll
    for (int u = 0; u < CHANNELS_PER_THREAD; ++u) {
        if (o0 + u < O) {
            y[(((size_t)n * O + o0 + u) * OH + i) * OW + j] = acc[u];
        }
    }
}

// gx = dL/dx, which is also the forward pass of the transposed convolution.
// The forward pass scatters each input pixel into every output it touches, so the obvious
// backward would have each output add into several input pixels, and threads would collide
// (needing atomics, whose order changes from run to run). Instead each thread *gathers*: it
// owns one input pixel (h, v) of image n in the input channels c0 .. c0+3 and walks the
// output pixels (i, j) whose windows reach it; the tap that does is p = (h + ph - i*sh) / dh
// (and likewise q). The thread is the only writer of its pixels.
// Why walk the outputs rather than the taps: with a stride of 2, only every other tap of a
// row reaches h, and which ones depends on whether h is even or odd. Walking the taps, the
// even and odd threads of a warp would skip different iterations, and a warp runs both sets
// one after the other; walking the outputs, every thread has about KH/sh of them.
// Launch with at least N * ceil(C/4) * H * W threads in a 1-D grid.
template <typename T>
__global__ void __launch_bounds__(BLOCK_THREADS, 4)
conv2d_grad_input(const T* gy, const T* w, T* gx, int N, int C, int H, int W, int O, int KH,
                  int KW, int OH, int OW, int sh, int sw, int ph, int pw, int dh, int dw)
{
    const int groups = (C + CHANNELS_PER_THREAD - 1) / CHANNELS_PER_THREAD;
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * groups * H * W) {
        return;
    }
    const int v = t % W;
    const int h = (t / W) % H;
    const int c0 = (t / (W * H)) % groups * CHANNELS_PER_THREAD;
    const int n = t / (W * H * groups);

    T acc[CHANNELS_PER_THREAD];
#pragma unroll
    for (int u = 0; u < CHANNELS_PER_THREAD; ++u) {
        acc[u] = T(0);
    }
    const Span rows = outputs_reaching(h, ph, KH, sh, dh, OH);
    const Span cols = outputs_reaching(v, pw, KW, sw, dw, OW);
    for (int i = rows.first; i <= rows.last; ++i) {
        const int p_dilated = h + ph - i * sh;  // = p * dh
        if (p_dilated % dh != 0) {
            continue;  // (dilation only) output row i reaches h between two taps
        }
        const int p = p_dilated / dh;
        for (int j = cols.first; j <= cols.last; ++j) {
            const int q_dilated = v + pw - j * sw;
            if (q_dilated % dw != 0) {
                continue;
            }
            const int q = q_dilated / dw;
            for (int o = 0; o < O; ++o) {
                const T g = gy[(((size_t)n * O + o) * OH + i) * OW + j];
#pragma unroll
                for (int u = 0; u < CHANNELS_PER_THREAD; ++u) {
                    if (c0 + u < C) {
                        acc[u] += g * w[(((size_t)o * C + c0 + u) * KH + p) * KW + q];
                    }
                }
            }
        }
    }
#pragma unroll
    for (int u = 0; u < CHANNELS_PER_THREAD; ++u) {
        if (c0 + u < C) {
            gx[(((size_t)n * C + c0 + u) * H + h) * W + v] = acc[u];
        }
    }
}

// gw = dL/dw: one block of GRAD_WEIGHT_THREADS threads per weight element gw[o,c,p,q].
// Each weight element is a sum of N*OH*OW products, usually far more terms than there are
// weights (a 5x5 kernel sees every output pixel of every image), so one thread per weight
// would leave most of the GPU idle. The threads of a block share the sum instead:
//   1. thread t adds the terms t, t + 256, t + 512, ... of the flattened (n, i, j), so
//      neighbouring threads read neighbouring pixels;
//   2. the 256 partial sums go to shared memory and are halved in a tree: in each round
//      thread t < s adds the partial sum of thread t + s, and all threads wait
//      (__syncthreads) before the next round reads what this one wrote.
// Which thread adds which term, and the tree, never change: the result is the same bit for
// bit on every run, unlike atomicAdd from many threads. Launch O*C*KH*KW blocks of 256; the
// block number and N*OH*OW + 256 must fit an int (the launcher checks).
template <typename T>
__global__ void conv2d_grad_weight(const T* x, const T* gy, T* gw,
                                   int N, int C, int H, int W, int O, int KH, int KW, int OH,
                                   int OW, int sh, int sw, int ph, int pw, int dh, int dw)
{
    __shared__ T partial[GRAD_WEIGHT_THREADS];

    const int q = blockIdx.x % KW;
    const int p = (blockIdx.x / KW) % KH;
    const int c = (blockIdx.x / (KW * KH)) % C;
    const int o = blockIdx.x / (KW * KH * C);
    const int t = threadIdx.x;

    T acc = T(0);
    const int terms = N * OH * OW;
    for (int term = t; term < terms; term += GRAD_WEIGHT_THREADS) {
        const int j = term % OW;
        const int i = (term / OW) % OH;
        const int n = term / (OW * OH);
        const int h = i * sh - ph + p * dh;
        const int v = j * sw - pw + q * dw;
        if (h >= 0 && h < H && v >= 0 && v < W) {
            acc += gy[(((size_t)n * O + o) * OH + i) * OW + j]
                 * x[(((size_t)n * C + c) * H + h) * W + v];
        }
    }

    partial[t] = acc;
    __syncthreads();
    for (int s = GRAD_WEIGHT_THREADS / 2; s > 0; s /= 2) {
        if (t < s) {
            partial[t] += partial[t + s];
        }
        __syncthreads();  // round s must be complete before round s/2 reads it
    }
    if (t == 0) {
        gw[blockIdx.x] = partial[0];  // blockIdx.x is the flat index of (o, c, p, q)
    }
}
