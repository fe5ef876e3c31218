"""fastact: compiled, numerically stable activation kernels with fused backward passes.

>>> import numpy as np, fastact as fa
>>> y = fa.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
>>> y.tolist()
[0.0, 0.5, 1.0]
"""

from fastact import cuda  # noqa: F401  (light: imports numba.cuda only on first GPU use)
from fastact._functions import (
    celu,
    celu_backward,
    elu,
    elu_backward,
    gelu,
    gelu_backward,
    hard_sigmoid,
    hard_sigmoid_backward,
    hard_swish,
    hard_swish_backward,
    hard_tanh,
    hard_tanh_backward,
    leaky_relu,
    leaky_relu_backward,
    log_sigmoid,
    log_sigmoid_backward,
    mish,
    mish_backward,
    relu,
    relu6,
    relu6_backward,
    relu_backward,
    selu,
    selu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)
from fastact._prelu import prelu, prelu_backward
from fastact._version import __version__

__all__ = [
    "__version__",
    "sigmoid",
    "sigmoid_backward",
    "log_sigmoid",
    "log_sigmoid_backward",
    "tanh",
    "tanh_backward",
    "softplus",
    "softplus_backward",
    "relu",
    "relu_backward",
    "relu6",
    "relu6_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "elu",
    "elu_backward",
    "celu",
    "celu_backward",
    "selu",
    "selu_backward",
    "gelu",
    "gelu_backward",
    "silu",
    "silu_backward",
    "mish",
    "mish_backward",
    "hard_sigmoid",
    "hard_sigmoid_backward",
    "hard_swish",
    "hard_swish_backward",
    "hard_tanh",
    "hard_tanh_backward",
    "prelu",
    "prelu_backward",
]
