// Max pooling in CUDA C: the forward pass with its argmax, and the backward pass.
//
//     y[n,c,i,j] = max_{p,q} x_pad[n, c, i*sh + p*dh, j*sw + q*dw]      (x_pad: -inf padding)
//     indices[n,c,i,j] = h * W + w, the flat position of that maximum in the unpadded plane
//     gx[n,c].flat[indices[n,c,i,j]] += gy[n,c,i,j]
//
// Ties go to the first maximum in row-major window order and a NaN counts as the maximum
// (the first NaN, then), as numpy.argmax decides. Every array is C-contiguous NCHW and the
// batch and channel axes are merged into one "plane" axis of N*C planes. See conv.cu for a
// first introduction to kernels, threads and blocks.

#include "float_bits.cuh"  // ordered, is_nan, negative_infinity: comparisons CuPy's -ftz cannot change
#include "windows.cuh"     // outputs_reaching, for the backward pass

// The first tap of a window that is not in the top (or left) padding, along one axis: the
// window starts at row `start` (negative inside the padding) and its taps are `dilation` apart.
__device__ __forceinline__ int first_tap_past_padding(int start, int dilation)
{
    return start >= 0 ? start : start + (-start + dilation - 1) / dilation * dilation;
}

// y and indices: one thread per output element (plane nc, row i, column j), j fastest.
// The thread walks its window in row-major order, skipping taps that fall in the padding
// (a -inf there could never beat a real value, and has no position in the unpadded plane).
// It starts, as the reference and PyTorch do, from best = -inf at the window's first tap
// past the top and left padding: the first real pixel, so a window whose real values are
// all -inf still points at one; and a window with no real pixel at all (possible with
// dilation) gives y = -inf at that same position. Launch with at least planes * OH * OW
// threads in a 1-D grid.
template <typename T>
__global__ void max_pool2d_forward(const T* x, T* y, long long* indices,
                                   int planes, int H, int W, int OH, int OW, int KH, int KW,
                                   int sh, int sw, int ph, int pw, int dh, int dw)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= planes * OH * OW) {
        return;  // the grid is rounded up to whole blocks; the spare threads stop here
    }
    const int j = t % OW;
    const int i = (t / OW) % OH;
    const int nc = t / (OW * OH);
    const T* x_plane = x + (size_t)nc * H * W;

    T best = negative_infinity<T>();
    long long best_at = (long long)first_tap_past_padding(i * sh - ph, dh) * W
                      + first_tap_past_padding(j * sw - pw, dw);
    for (int p = 0; p < KH; ++p) {
        const int h = i * sh - ph + p * dh;
        if (h < 0 || h >= H) {
            continue;
        }
        for (int q = 0; q < KW; ++q) {
            const int v = j * sw - pw + q * dw;
            if (v < 0 || v >= W) {
                continue;
            }
            const T value = x_plane[h * W + v];
            // Compared through the bits (float_bits.cuh), not with `value > best`, which
            // -ftz=true would compile to a comparison that reads a subnormal as 0. Strictly
            // greater keeps the first of equal maxima; once best is NaN nothing replaces it,
            // so the first NaN wins.
            if (!is_nan(best) && (is_nan(value) || ordered(value) > ordered(best))) {
                best = value;
                best_at = (long long)h * W + v;
            }
        }
    }
    y[t] = best;
    indices[t] = best_at;
}

// gx from gy and the forward pass's indices, as a gather with no atomics.
// When windows overlap (stride < kernel size) one input pixel can be the maximum of several
// windows, so one thread per output adding into gx would collide with its neighbours and
// need atomics, which add in whatever order the threads arrive. Here thread t owns one input
// pixel (h, v) of plane nc instead. It walks only the outputs (i, j) whose windows cover the
// pixel (outputs_reaching, the same geometry as the convolution's input gradient), in
// row-major order, and adds gy[i, j] where that window picked this pixel. Only this thread
// writes gx[h, v] and the order is fixed, so the sums come out the same bit for bit on every
// run; and each output is read only by the threads of the pixels its window covers. With
// dilation a window can span the pixel without a tap on it; its index then names another
// pixel, so the index test alone decides. Launch with at least planes * H * W threads in a
// 1-D grid.
template <typename T>
__global__ void max_pool2d_backward(const T* gy, const long long* indices, T* gx,
                                    int planes, int H, int W, int OH, int OW, int KH, int KW,
                                    int sh, int sw, int ph, int pw, int dh, int dw)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= planes * H * W) {
        return;
    }
    const int v = t % W;
    const int h = (t / W) % H;
    const int nc = t / (W * H);
    const long long here = (long long)h * W + v;  // this pixel's flat position, as in indices
    const T* gy_plane = gy + (size_t)nc * OH * OW;
    const long long* indices_plane = indices + (size_t)nc * OH * OW;

    const Span rows = outputs_reaching(h, ph, KH, sh, dh, OH);
    const Span cols = outputs_reaching(v, pw, KW, sw, dw, OW);
    T sum = T(0);
    for (int i = rows.first; i <= rows.last; ++i) {
        for (int j = cols.first; j <= cols.last; ++j) {
            if (indices_plane[i * OW + j] == here) {
                sum += gy_plane[i * OW + j];
            }
        }
    }
    gx[t] = sum;
}
