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

// y and indices: one thread per output element (plane nc, row i, column j), j fastest.
// The thread walks its window in row-major order, skipping taps that fall in the padding
// (a -inf there could never beat a real value, and has no position in the unpadded plane).
// It starts from "nothing seen yet" (best_at = -1), so a window whose real values are all -inf
// still picks its first real element, as PyTorch does. Launch with at least
// planes * OH * OW threads in a 1-D grid.
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

    T best = T(0);
    int best_at = -1;
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
            // Strictly greater keeps the first of equal maxima; once best is NaN nothing
            // replaces it, so the first NaN wins.
            if (best_at < 0 || value > best || (isnan(value) && !isnan(best))) {
                best = value;
                best_at = h * W + v;
            }
        }
    }
    y[t] = best;
    indices[t] = best_at;
}

// gx from gy and the forward pass's indices, as a gather with no atomics.
// When windows overlap (stride < kernel size) one input pixel can be the maximum of several
// windows, so one thread per output adding into gx would collide. Here thread (nc, h) owns
// the whole input row h of plane nc: it clears the row, then walks every output of its
// plane in row-major order and adds gy wherever the recorded maximum lies in its row. Only
// this thread writes the row, and the walk order is fixed, so the sums come out the same
// bit for bit on every run. Neighbouring threads own neighbouring rows of one plane and
// read the same output at the same time, which the memory system serves as one broadcast.
// The price is that each output is read H times instead of once: the primitive is given
// the indices but not the window geometry, so a thread cannot tell which outputs might
// reach its row without looking. Launch with at least planes * H threads in a 1-D grid.
template <typename T>
__global__ void max_pool2d_backward(const T* gy, const long long* indices, T* gx,
                                    int planes, int H, int W, int OH, int OW)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= planes * H) {
        return;
    }
    const int h = t % H;
    const int nc = t / H;
    T* gx_row = gx + ((size_t)nc * H + h) * W;
    const long long row_begin = (long long)h * W;
    const long long row_end = row_begin + W;
    const T* gy_plane = gy + (size_t)nc * OH * OW;
    const long long* indices_plane = indices + (size_t)nc * OH * OW;

    for (int v = 0; v < W; ++v) {
        gx_row[v] = T(0);
    }
    for (int k = 0; k < OH * OW; ++k) {
        const long long at = indices_plane[k];
        if (at >= row_begin && at < row_end) {
            gx_row[at - row_begin] += gy_plane[k];
        }
    }
}
