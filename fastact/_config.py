"""Every jit option fastact uses, in one place.

Kernels never pass numba options themselves: they use the dictionaries below, and
``tests/test_registry.py`` fails if another module under ``fastact/`` spells out a jit flag.

* ``fastmath`` is limited to ``contract`` (lets LLVM fuse a*b+c into an FMA). Never
  ``nnan``/``ninf`` (they break NaN/inf handling) and never ``reassoc`` (it undoes the
  range reduction of fastact's exp: float64 error rose to ~114 ULP when we tried).
* ``error_model='numpy'``: division by zero gives inf/NaN like NumPy instead of raising,
  which the branch-free kernels rely on (both sides of a select are computed).
* ``cache``: compiled kernels are stored on disk next to the sources (or in
  ``NUMBA_CACHE_DIR``); when no writable location exists the kernels still work,
  they are simply compiled again in each process.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

FASTMATH = {"contract"}
ERROR_MODEL = "numpy"

#: Arrays with at least this many elements use the multi-threaded kernels. Measured on the
#: 2-core machine (docs/performance.md): with the spin count below, a parallel launch costs
#: ~3 us and wins from ~16K elements for sigmoid/gelu and ~64K for relu.
PARALLEL_THRESHOLD = int(os.environ.get("FASTACT_PARALLEL_THRESHOLD", 1 << 15))

# numba's OpenMP workers spin after each parallel kernel (GNU default: 300,000 spins), stealing
# the cores from OpenBLAS's threads: a loop of 512x512 matmuls and 1M-element parallel
# kernels ran 5x slower than with serial kernels. A short spin keeps launches cheap and lets
# the workers sleep before BLAS needs the cores. Set before numba's OpenMP runtime starts; a
# value the user set wins. (OMP_WAIT_POLICY=passive also avoids the fight, but makes every
# parallel launch cost ~80 us.)
os.environ.setdefault("GOMP_SPINCOUNT", "20000")

#: Row chunks of the parallel fused backward (each keeps a partial bias gradient). A
#: constant, not numba.get_num_threads(): kernels that call it miss the disk cache.
FUSED_CHUNKS = 16

#: Threads per block of the CUDA kernels (tests shrink it).
CUDA_BLOCK_SIZE = 256
#: At most this many blocks per launch: the kernels loop over the rest (grid-stride). 8192
#: blocks of 256 threads keep every SM of a large GPU busy (132 SMs x 2048 threads = 135 blocks'
#: worth resident at once) while a launch stays cheap.
CUDA_MAX_BLOCKS = 8192
#: Fused bias backward: each thread sums at least this many rows before writing a partial bias
#: sum, so the float64 partials stay small next to the data (<= 1/16 of the rows).
CUDA_BIAS_MIN_ROWS = 16
#: Column sums (the bias gradient's partials, batch-norm statistics) run in blocks of one warp
#: along the columns by this many threads along the rows, which share each column's sum
#: through shared memory (32 x 32 = CUDA_MAX_THREADS; tests shrink it).
CUDA_REDUCE_ROWS = 32
#: Softmax and its cross-entropy on the GPU: rows of at least CUDA_ROW_THREADS_MIN_CLASSES
#: classes are shared by CUDA_ROW_THREADS threads (a warp; strided over the row, so their loads
#: are consecutive; a shared-memory tree reduces the max and the sum), wider rows by up to a
#: block; narrower rows take one thread each (no barriers). Tests shrink both.
CUDA_ROW_THREADS_MIN_CLASSES = 32
CUDA_ROW_THREADS = 32

#: CUDA kernels (fastact.cuda, generated in fastact/_cuda_kernels.py). No fastmath: numba-cuda's
#: fastmath=True flushes subnormals to zero, approximates division and sqrt, and sets LLVM's
#: fast-math flags (nnan/ninf); FMA contraction is on without it (NVVM's default), as
#: ``contract`` on the CPU. No disk cache: numba's cache checks only the kernel's own file, and
#: fastact's fingerprinting locators (below) cover the CPU cache only; compiling a CUDA kernel
#: takes 0.35-4.2 s (to PTX and machine code, one core of the 2-core VM; mish the slowest), once
#: per process, kernel and dtype. The scalar functions the kernels call
#: are the CPU's own ``SCALAR`` njit functions: numba-cuda compiles them as device functions
#: (their ``inline='always'`` inlines them at numba-IR level, so the kernel's options apply).
CUDA_KERNEL = dict(fastmath=False, cache=False)
#: CUDA device functions that need CUDA itself (shared memory, barriers); scalar math is plain
#: ``SCALAR`` njit functions, shared with the CPU kernels.
CUDA_DEVICE = dict(device=True, fastmath=False, cache=False)
#: Shared-memory slots of a block reduction: the largest block CUDA allows.
CUDA_MAX_THREADS = 1024
#: Bytes of one vector load or store (fastact._cuda_memory: four float32, or four float64 in
#: two): the alignment the elementwise kernels check before they use them.
CUDA_VECTOR_BYTES = 16


def source_fingerprint() -> str:
    """A hash of every source file of the package.

    numba's cache checks only the content of a kernel's own file, not of the functions it
    calls (the activations, the math): kernels would be reloaded stale after an edit of
    ``activations.py``. fastact's cache locators add this fingerprint to every source stamp,
    so any change to the package's sources recompiles its kernels, and nothing else's.
    """
    import hashlib

    digest = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            with open(os.path.join(here, name), "rb") as fh:
                digest.update(name.encode() + fh.read())
    return digest.hexdigest()[:16]


def _install_cache_locators() -> None:
    """Put fastact's locators (numba's own, plus the fingerprint) first in numba's list."""
    try:
        from numba.core import caching

        impl = caching.CacheImpl
        bases = [
            caching.UserProvidedCacheLocator,
            caching.InTreeCacheLocator,
            caching.UserWideCacheLocator,
        ]
    except (ImportError, AttributeError):  # pragma: no cover - numba internals moved
        return
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    fingerprint = source_fingerprint()

    def make(base: Any) -> Any:
        class FastactLocator(base):
            def get_source_stamp(self):
                return (super().get_source_stamp(), fingerprint)

            @classmethod
            def from_function(cls, py_func, py_file):
                if not os.path.abspath(py_file).startswith(package):
                    return None
                return super().from_function(py_func, py_file)

        FastactLocator.__name__ = FastactLocator.__qualname__ = "Fastact" + base.__name__
        return FastactLocator

    if not any(c.__name__.startswith("Fastact") for c in impl._locator_classes):
        impl._locator_classes = [make(b) for b in bases] + list(impl._locator_classes)


def _cache_is_usable() -> bool:
    """True when numba can write its cache for this package somewhere."""
    if os.environ.get("FASTACT_DISABLE_CACHE"):
        return False
    candidates = [os.path.join(os.path.dirname(__file__), "__pycache__")]
    if os.environ.get("NUMBA_CACHE_DIR"):
        candidates.append(os.environ["NUMBA_CACHE_DIR"])
    else:
        candidates.append(os.path.join(os.path.expanduser("~"), ".cache", "numba"))
    for path in candidates:
        try:
            os.makedirs(path, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
            return True
        except OSError:
            continue
    return False


CACHE = _cache_is_usable()
if CACHE:
    _install_cache_locators()

#: Scalar device functions, inlined into every kernel that calls them. Inlined by numba
#: itself (inline='always'): left to LLVM, the larger ones (silu, softplus, gelu) stayed
#: out-of-line calls and their loops did not vectorize (20x slower).
SCALAR: dict[str, Any] = dict(
    cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, inline="always"
)
#: Implementations of ``numba.extending.overload`` functions (compiled into their callers).
#: Typed ``Any``: numba's stubs expect their private ``_JITOptions`` TypedDict here.
OVERLOAD: Any = dict(fastmath=FASTMATH, error_model=ERROR_MODEL)
#: The same implementations compiled for CUDA: no fastmath flag at all. numba-cuda takes any
#: flag, ``contract`` alone included, for fastmath=True: a float32 division compiled with
#: OVERLOAD became ``div.approx.f32`` (2 ULP; 0 for divisors beyond 2^126) in the kernels of
#: sigmoid, tanh, silu, gelu and more. NVVM contracts multiply-adds into FMAs without the flag.
CUDA_OVERLOAD: Any = dict(fastmath=False, error_model=ERROR_MODEL)
#: Single-threaded array kernels (small arrays, strided views).
SERIAL: dict[str, Any] = dict(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, nogil=True)
#: One term of a sum whose order does not matter (a gradient's squared norm): ``reassoc`` on
#: this function's own addition lets LLVM vectorize the loop's reduction once the function
#: is inlined there (a float64 sum in IEEE order stays scalar and took the whole loop with it:
#: 4.5x slower), while the loop's other arithmetic keeps its exact order. Only for sums: never
#: for math with a range reduction (see ``FASTMATH``).
SUM_TERM: dict[str, Any] = dict(
    cache=CACHE, fastmath=FASTMATH | {"reassoc"}, error_model=ERROR_MODEL
)
#: Multi-threaded array kernels (large contiguous arrays).
PARALLEL: dict[str, Any] = dict(
    cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, nogil=True, parallel=True
)
