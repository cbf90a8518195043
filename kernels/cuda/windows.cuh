// Window geometry shared by the kernels that run a sliding window backwards: the gradient of
// a convolution with respect to its input (conv.cu) and the max-pooling backward (pool.cu).
//
// Both forward passes slide a window over the padded input: output i reads the input rows
//
//     i*stride - pad + p*dilation      for the taps p = 0 .. kernel-1
//
// (likewise along the columns). Going backwards, a thread that owns one input position h
// must find the outputs whose windows reach it. This file is pasted into each .cu file that
// includes it (tinymed.kernels.cuda_source), so it has no include guard of its own.

// The output positions i that reach input position h along one axis (rows or columns):
// those with i*stride + p*dilation = h + pad for some tap 0 <= p < kernel, and 0 <= i < outputs.
// Tap p = kernel-1 gives the smallest i*stride, h + pad - (kernel-1)*dilation, and p = 0 the
// largest, h + pad; the span is every i in between (some of which may hit h between two taps
// when dilation > 1). Empty when first > last.
struct Span {
    int first;
    int last;
};

__device__ __forceinline__ Span outputs_reaching(int h, int pad, int kernel, int stride,
                                                 int dilation, int outputs)
{
    const int lowest = h + pad - (kernel - 1) * dilation;
    return Span{lowest > 0 ? (lowest + stride - 1) / stride : 0, min(outputs - 1, (h + pad) / stride)};
}
