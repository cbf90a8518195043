"""tinymed.ops: every differentiable op, one module per formula.

Each module holds its autograd Functions, forward beside backward, and the functions users call
(re-exported by :mod:`tinymed.functional` and used by the Tensor's methods). Two layers, so that
no import cycle forms:

below the Tensor (they import only :mod:`tinymed.autograd`; the Tensor's methods call them)
    ``elementwise`` (+ - * / ** exp log sqrt abs clamp), ``reduction`` (sum, max/min, argmax),
    ``shape`` (reshape, permute, expand, indexing, where, cat, stack), ``matmul``,
    ``activation`` (relu, sigmoid, tanh, gelu, softmax, ...), ``conversion`` (dtype casts,
    device moves), with their shared ``arguments`` checks and ``operands`` conversions;

above the Tensor (they import :mod:`tinymed.tensor`)
    ``conv`` (conv2d, conv_transpose2d), ``pool`` (max/avg/adaptive pooling), ``linear``,
    ``attention``, ``norm`` (batch/layer norm), ``loss``, ``dropout``, ``pad``, ``one_hot``,
    ``interpolate`` (resizing), ``embedding`` (lookup tables).
"""
