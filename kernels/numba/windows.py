"""Window geometry shared by the kernels that run a sliding window backwards: the gradient
of a convolution with respect to its input (:mod:`.conv`) and the max-pooling backward
(:mod:`.pool`). The twin of ``kernels/cuda/windows.cuh``.

Both forward passes slide a window over the padded input: output ``i`` reads the input rows
``i*stride - pad + p*dilation`` for the taps ``p = 0 .. kernel-1`` (likewise along the
columns). Going backwards, a thread that owns one input position ``h`` must find the outputs
whose windows reach it.
"""

from __future__ import annotations

from numba import cuda


@cuda.jit(device=True)
def outputs_reaching(h, pad, kernel, stride, dilation, outputs):
    """``(first, last)``: the output positions ``i`` that reach input position ``h`` along one axis.

    Those with ``i*stride + p*dilation = h + pad`` for some tap ``0 <= p < kernel``, and
    ``0 <= i < outputs``. Tap ``p = kernel-1`` gives the smallest ``i*stride``,
    ``h + pad - (kernel-1)*dilation``, and ``p = 0`` the largest, ``h + pad``; the span is every
    ``i`` in between (some of which may hit ``h`` between two taps when ``dilation > 1``).
    Empty when ``first > last``.
    """
    lowest = h + pad - (kernel - 1) * dilation
    first = (lowest + stride - 1) // stride if lowest > 0 else 0
    last = (h + pad) // stride
    if last > outputs - 1:
        last = outputs - 1
    return first, last
