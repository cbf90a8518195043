"""The four formula families as hand-written Numba CUDA kernels.

One module per family, each the Python twin of a file in ``kernels/cuda``:

=================  ==================================================================
``conv``           convolution forward, gradient w.r.t. input, gradient w.r.t. weight
``pool``           max pooling forward (with argmax) and its backward
``gemm``           shared-memory tiled matrix product with the bias fused in
``attention``      naive and fused (online-softmax) attention, forward and backward
``windows``        the window geometry that ``conv`` and ``pool`` share going backwards
=================  ==================================================================

Reading GPU code for the first time
-----------------------------------
A kernel is a function that thousands of threads run at once, each on its own piece of the
output. Threads come in *blocks* (which share fast on-chip ``cuda.shared`` memory and can
wait for one another with ``cuda.syncthreads()``), and blocks form the *grid*. Inside a
kernel, ``cuda.grid(1)`` (or ``cuda.blockIdx``/``cuda.threadIdx``) tells a thread which
piece is its own. Launching ``kernel[blocks, threads_per_block](arguments)`` starts it.

Why most kernels are built by a function of the dtype
-----------------------------------------------------
Numba compiles one machine-code version of a kernel per argument type on its own, but the
types of *local* things, the accumulators and the ``cuda.shared.array`` tiles, must be
constants when the kernel is compiled. So a kernel that has such things is written inside a
small builder, ``xxx_kernel(dtype, ...)``, that fixes the element type (``float32`` or
``float64``) and the tile sizes, and is cached so each combination compiles once per
process; a kernel without them is a plain ``@cuda.jit`` function. Tile sizes are arguments,
not constants, because the launcher (:mod:`tinymed.backends.numba_cuda`) picks them: those
of the CUDA C kernels on a GPU, tiny ones in Numba's CUDA simulator, which runs every
thread in Python.

Kernels compare with ``if`` where Python would call ``min`` or ``max``: Numba's CUDA target
(0.68) fails to compile those builtins.

No kernel adds floating-point numbers with atomics: every sum is taken in a fixed order, so
two runs on the same inputs give bit-identical results.
"""
