"""Every jit option fastact uses, in one place.

Kernels never pass numba options themselves: they use the dictionaries below, and
``tests/test_config.py`` fails if a module under ``fastact/`` spells out a jit flag.

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
import sys
import tempfile

FASTMATH = {"contract"}
ERROR_MODEL = "numpy"

#: Arrays with at least this many elements use the multi-threaded kernels.
PARALLEL_THRESHOLD = int(os.environ.get("FASTACT_PARALLEL_THRESHOLD", 1 << 17))

#: Threads per block of the CUDA kernels (tests shrink it).
CUDA_BLOCK_SIZE = 256


#: The files every kernel is compiled from (the generated kernels embed their hash).
KERNEL_SOURCES = ("_config.py", "_math.py", "activations.py", "_codegen.py")


def source_fingerprint() -> str:
    """A hash of KERNEL_SOURCES; ``_kernels.py`` records the one it was generated from."""
    import hashlib

    digest = hashlib.sha256()
    for name in KERNEL_SOURCES:
        with open(os.path.join(os.path.dirname(__file__), name), "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()[:16]


def _generated_kernels_are_current() -> bool:
    """numba checks only the timestamp of a kernel's own file, not of what it calls: if the
    sources changed since ``_kernels.py`` was generated, cached kernels could be stale."""
    try:
        with open(os.path.join(os.path.dirname(__file__), "_kernels.py"), encoding="utf-8") as fh:
            fh.readline()
            recorded = fh.readline().split(":")[-1].strip()
        return recorded == source_fingerprint()
    except OSError:
        return False


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


CACHE = _cache_is_usable() and _generated_kernels_are_current()

#: Scalar device functions: inlined into every kernel that calls them.
SCALAR = dict(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL)
#: Implementations of ``numba.extending.overload`` functions (compiled into their callers).
OVERLOAD = dict(fastmath=FASTMATH, error_model=ERROR_MODEL)
#: Single-threaded array kernels (small arrays, strided views).
SERIAL = dict(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, nogil=True)
#: Multi-threaded array kernels (large contiguous arrays).
PARALLEL = dict(cache=CACHE, fastmath=FASTMATH, error_model=ERROR_MODEL, nogil=True, parallel=True)

if "nnan" in FASTMATH or "ninf" in FASTMATH or "reassoc" in FASTMATH:  # pragma: no cover
    sys.exit("fastact._config: forbidden fastmath flag")
