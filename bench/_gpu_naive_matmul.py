"""The CUDA matmul kernel fastact had before its tiled one (fastact/_cuda_fused.py): one thread
per element of c, the inner loop reading a and b from global memory (a[k, i] or b[j, k] a
row's stride apart between the threads of a warp when transposed). bench/gpu_mlp.py times it
next to the tiled kernel. Imported only once a script has chosen GPU or simulator (it imports
numba.cuda)."""

from numba import cuda

from fastact._cuda_launch import CUDA_KERNEL
from fastact._math import typed


@cuda.jit(**CUDA_KERNEL)
def naive_matmul(a, b, c, trans_a, trans_b):
    """c = op(a) @ op(b), one thread per element of c (launch: fastact.cuda._grid_2d)."""
    j0, i0 = cuda.grid(2)
    sj, si = cuda.gridsize(2)
    depth = a.shape[0] if trans_a else a.shape[1]
    for i in range(i0, c.shape[0], si):
        for j in range(j0, c.shape[1], sj):
            acc = typed(0.0, c[0, 0])
            for k in range(depth):
                x = a[k, i] if trans_a else a[i, k]
                y = b[j, k] if trans_b else b[k, j]
                acc += x * y
            c[i, j] = acc
