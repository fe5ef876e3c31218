"""Every CUDA kernel compiles to PTX for real (numba-cuda + NVVM, no GPU needed), and float32
kernels use float64 only where the design says so. Also: a process without CUDA never imports
numba.cuda, and fastact.cuda.is_available() answers without raising.

Both run in subprocesses without NUMBA_ENABLE_CUDASIM (the simulator has no compiler).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from fastact import _config
from fastact.activations import ACTIVATIONS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Which float32 kernels have float64 instructions in their PTX, by design (keep this table
#: exact: the test fails both ways, so that it stays the documentation):
#:
#: * fastact._math's float32 exp, expm1, exp_mul, tanh, gelu and gelu_tanh (their
#:   derivatives too) compute in float32: no activation uses float64 in its float32 kernels;
#: * every ``*_bias_backward`` accumulates the bias gradient in float64 (as fastact.fused on the
#:   CPU), and ``column_sums`` adds columns (the float64 partial sums) in float64.
#:
#: On GPUs with slow float64 (consumer cards: 1/64 of float32) only those become
#: compute-bound; on H100/H200 (float64 at 1/2 rate) they stay memory-bound.
#: name: (forward uses float64, gradient uses float64)
F64_BY_DESIGN = {
    "sigmoid": (False, False),
    "log_sigmoid": (False, False),
    "tanh": (False, False),
    "softplus": (False, False),
    "relu": (False, False),
    "relu6": (False, False),
    "leaky_relu": (False, False),
    "elu": (False, False),
    "celu": (False, False),
    "selu": (False, False),
    "gelu": (False, False),
    "gelu_tanh": (False, False),
    "silu": (False, False),
    "mish": (False, False),
    "hard_sigmoid": (False, False),
    "hard_swish": (False, False),
    "hard_tanh": (False, False),
}


def clean_env():
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def ptx_results(tmp_path_factory):
    pytest.importorskip("numba.cuda")
    path = tmp_path_factory.mktemp("ptx") / "ptx.json"
    command = [sys.executable, os.path.join(ROOT, "tests", "cuda", "ptx_check.py")]
    # a session of its own: on a timeout its compiling worker processes are killed with it
    proc = subprocess.Popen(
        [*command, "--cc", "9.0", "--json", str(path)],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if not path.exists():
        if "NVVM" in err or "libnvvm" in err.lower():
            pytest.skip("no NVVM here: pip install 'numba-cuda[cu13]' (or [cu12])")
        raise AssertionError(f"ptx_check.py failed:\n{out[-3000:]}\n{err[-5000:]}")
    return json.loads(path.read_text())


#: The fused kernels (fastact/_cuda_fused.py): float64 only in their sums over many elements
#: (losses, softmax denominators, batch statistics, slope and bias gradients, norms).
FUSED_F64 = {
    "softmax": True,  # the row sum
    "softmax_cross_entropy": True,  # row sums, the loss
    "bce_with_logits": True,  # the loss
    "count_bad_labels": True,  # the count, added in float64
    "count_bad_targets": True,
    "dropout": False,
    "dropout_backward": False,
    "batch_norm_moments": True,  # float64 partial sums
    "batch_norm_stats": True,  # mean, variance
    "batch_norm_apply": False,
    "batch_norm_backward_partials": True,
    "batch_norm_backward_sums": True,
    "batch_norm_backward_apply": False,
    "sgd": True,  # the gradient's sum of squares (the MLP's norms; skipped unless asked)
    "adam": True,
    "sgd_segments": True,  # as sgd, per segment (the MLP's update of every parameter)
    "adam_segments": True,
    "prelu_forward": False,
    "prelu_backward": True,  # the slope's gradient
    "matmul": False,
    "gather_batch": False,
    "add_bias": False,
    "copy_into": True,  # float64 sums stored in the parameter's dtype
    "zero": False,  # (launched on the float64 scratch: a plain store)
    "end_step": True,  # the count, added in float64; the norms' square roots
}


def test_table_covers_every_activation():
    assert set(F64_BY_DESIGN) == set(ACTIVATIONS)


def test_every_kernel_compiles_to_ptx(ptx_results):
    errors = {k: r["error"] for k, r in ptx_results.items() if "error" in r}
    assert not errors, "\n\n".join(f"{k}: {e}" for k, e in errors.items())
    expected = {
        f"{n}_{kind}/{dt}"
        for n in ACTIVATIONS
        for kind in ("forward", "backward", "bias_forward", "bias_backward")
        for dt in ("float32", "float64")
    } | {"column_sums/float32", "column_sums/float64", "column_sums/partials"}
    expected |= {f"fused.{n}/{dt}" for n in FUSED_F64 for dt in ("float32", "float64")}
    expected |= {"probe.log1p/float32", "probe.log1p/float64"}  # see test_approximate_division_*
    assert set(ptx_results) == expected


def test_float64_in_float32_kernels_only_by_design(ptx_results):
    want = {"column_sums"} | {f"fused.{n}" for n, f64 in FUSED_F64.items() if f64}
    for name, (forward, grad) in F64_BY_DESIGN.items():
        want.add(f"{name}_bias_backward")
        if forward:
            want |= {f"{name}_forward", f"{name}_bias_forward"}
        if grad:
            want.add(f"{name}_backward")
    got = {
        k.split("/")[0] for k, r in ptx_results.items() if k.endswith("/float32") and r.get("f64")
    }
    unexpected = sorted(got - want)
    assert not unexpected, (
        f"float32 kernels with float64 instructions in their PTX: {unexpected} "
        f"(a float literal or a float64 helper in an activation? see typed())"
    )
    gone = sorted(want - got)
    assert not gone, f"no float64 in these float32 kernels any more: update F64_BY_DESIGN: {gone}"
    # sgd/adam: float64 only in the gradient's sum of squares and its block sum (20-23 PTX
    # instructions; 21-33 with segments); an update promoted to float64 would add dozens more
    for name in ("fused.sgd", "fused.adam", "fused.sgd_segments", "fused.adam_segments"):
        assert ptx_results[f"{name}/float32"]["f64"] <= 40, ptx_results[f"{name}/float32"]


#: Fused kernels whose grid-stride loops index with unsigned integers (the others index once
#: per row, or through a gathered or computed index), and the wraparound each may keep: the
#: segment kernels read their segment table (starts, stops, decays, slots) with a signed
#: index, once per segment, not per element.
FUSED_UNSIGNED = {
    "softmax": 0,
    "softmax_cross_entropy": 0,
    "count_bad_labels": 0,
    "count_bad_targets": 0,
    "dropout": 0,
    "dropout_backward": 0,
    "batch_norm_moments": 0,
    "batch_norm_stats": 0,
    "batch_norm_apply": 0,
    "batch_norm_backward_partials": 0,
    "batch_norm_backward_sums": 0,
    "batch_norm_backward_apply": 0,
    "sgd": 0,
    "adam": 0,
    "sgd_segments": 2,
    "adam_segments": 2,
    "add_bias": 0,
    "matmul": 0,
    "copy_into": 0,
    "zero": 0,
}


def test_kernels_index_without_negative_index_wraparound(ptx_results):
    """Signed indices cost numba's wraparound (a sign test, a masked add) on every array
    access; the generated kernels and the fused elementwise ones index unsigned
    (docs/gpu.md: 59 -> 32 PTX instructions per four relu elements)."""
    allowed = {k: 0 for k in ptx_results if not k.startswith(("fused.", "probe."))}
    assert len(allowed) == 4 * 2 * len(ACTIVATIONS) + 3  # + column_sums: 2 dtypes, partials
    for name, count in FUSED_UNSIGNED.items():
        allowed |= {f"fused.{name}/{dt}": count for dt in ("float32", "float64")}
    assert set(allowed) <= set(ptx_results)
    signed = sorted(k for k, n in allowed.items() if ptx_results[k].get("wraparound", 1) > n)
    assert not signed, f"kernels with signed-index wraparound in their PTX: {signed}"
    # the check itself sees wraparound where indices are signed (order[start + i])
    assert ptx_results["fused.gather_batch/float32"]["wraparound"] > 0


#: Kernels that call _column_total: blocks of up to 1024 threads (fastact.cuda._grid_columns)
REDUCING = {"column_sums", "fused.batch_norm_stats", "fused.batch_norm_backward_sums"}


def test_column_sum_kernels_fit_blocks_of_1024_threads(ptx_results):
    """Their launch bound (.maxntid 1024) makes the compiler keep registers within 64 per thread,
    so that a 32 x 32 block always launches; the other kernels have no bound."""
    bounded = {k.split("/")[0] for k, r in ptx_results.items() if r.get("max_threads")}
    assert bounded == REDUCING
    assert all(
        ptx_results[k]["max_threads"] == 1024 for k in ptx_results if k.split("/")[0] in REDUCING
    )


def test_a_process_without_gpu_work_never_imports_numba_cuda():
    code = (
        "import sys, numpy as np, fastact as fa\n"
        "from fastact import fused\n"
        "fa.sigmoid(np.ones(3)); fa.gelu_backward(np.ones(3), np.ones(3))\n"
        "fused.bias_act(np.ones((2, 3)), np.ones(3), 'relu')\n"
        "assert 'numba.cuda' not in sys.modules, 'import fastact imported numba.cuda'\n"
        "sys.modules['numba.cuda'] = None  # as without numba-cuda: no ImportError escapes\n"
        "print(fa.cuda.is_available())\n"
        "del sys.modules['numba.cuda']\n"
        "print(fa.cuda.is_available())  # this machine's answer\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    without, here = proc.stdout.split()
    assert without == "False" and here in ("True", "False")


def test_shared_memory_stays_within_two_reduction_buffers(ptx_results):
    """Each shared-memory reduction (a block sum, a row's or a column's total) declares one
    buffer of CUDA_MAX_THREADS float64 (8 KiB) per compiled device function; no kernel needs
    more than two (a row's total and the block's loss sum), so eight blocks of 256 threads fit
    on an SM of sm_80 or sm_90 (164 and 228 KiB). A helper compiled twice (a literal argument, or two calling device functions:
    see _row_total) would add a buffer, or fail to compile."""
    assert ptx_results["fused.softmax/float32"]["shared"] == 8192
    assert ptx_results["fused.softmax_cross_entropy/float32"]["shared"] == 16384
    heavy = {
        k: r["shared"]
        for k, r in ptx_results.items()
        if r.get("shared", 0) > 16384 and not k.startswith("fused.matmul/")
    }
    assert not heavy, heavy
    # the matmul stages two slabs of 32 x 33 elements of its dtype (16.5 KiB in float64:
    # by shared memory, eight blocks of 256 threads still fit on an SM)
    for dtype, size in (("float32", 4), ("float64", 8)):
        assert ptx_results[f"fused.matmul/{dtype}"]["shared"] == 2 * 32 * 33 * size


#: Which float32 kernels divide approximately (``div.approx.f32``), by design: those whose
#: quotient is corrected afterwards (fastact._math.approx_quotient): n / (1 + e) in
#: over_one_plus (sigmoid, silu, tanh, gelu_tanh, and the gradients of log_sigmoid and
#: softplus) through its exact remainder, and gelu's 1 / (1 + C1 |x|) by a Newton step. Every
#: other float instruction of every kernel rounds as IEEE arithmetic, as the CPU kernels: no
#: other approximate or flush-to-zero instruction anywhere, and none in float64 kernels.
#: (Before 2026-12-06 numba-cuda compiled fastact._math's overloads, whose CPU options carry
#: the ``contract`` flag, as fastmath: every float32 division in them was approximate,
#: uncorrected ones included.) Exact both ways, as F64_BY_DESIGN.
#: name: (forward, gradient)
APPROX_QUOTIENT_BY_DESIGN = {
    "sigmoid": (True, False),
    "log_sigmoid": (False, True),
    "tanh": (True, False),
    "softplus": (False, True),
    "gelu": (True, True),
    "gelu_tanh": (True, False),
    "silu": (True, False),
}
FUSED_APPROX_QUOTIENT = {"bce_with_logits"}  # its gradient's sigmoid


def test_approximate_division_only_by_design(ptx_results):
    want = {f"fused.{n}" for n in FUSED_APPROX_QUOTIENT}
    for name, (forward, grad) in APPROX_QUOTIENT_BY_DESIGN.items():
        if forward:
            want |= {f"{name}_forward", f"{name}_bias_forward"}
        if grad:
            want |= {f"{name}_backward", f"{name}_bias_backward"}
    got, other = set(), {}
    for key, r in ptx_results.items():
        ops = dict(r["approximate"])
        if key.endswith("/float32") and ops.pop("div.approx.f32", 0):
            got.add(key.split("/")[0])
        if ops:  # anything else, and any approximate division outside float32 kernels
            other[key] = ops
    assert not other, f"approximate or flush-to-zero instructions (fastmath?): {other}"
    assert got == want, (sorted(got - want), sorted(want - got))
    # a float32 quotient reached through fastact._math's overloads and not corrected afterwards
    # (log1p's) is an IEEE division, as on the CPU: numba-cuda compiled the overloads with
    # fast math before they had CUDA options of their own (div.approx.f32 here)
    probe = ptx_results["probe.log1p/float32"]
    assert probe["approximate"] == {} and probe["ieee_divisions"] >= 2, probe


def test_activation_kernels_move_four_elements_per_instruction(ptx_results):
    """The generated kernels (forward, backward, bias + activation and its backward) load and
    store through fastact._cuda_memory: 128-bit accesses (``ld.global.v4.f32``; ``.v2.f64``
    twice for float64's four elements), at three sites per array (two groups in flight, then
    one); the bias forward stores x + b too where the backward needs it. The other kernels
    index element by element: the table below fails both ways, so it stays true."""
    vector = {}
    for name, spec in ACTIVATIONS.items():
        bias_stores = 3 if spec.fused_saves_output else 6
        for dtype, halves in (("float32", 1), ("float64", 2)):
            vector[f"{name}_forward/{dtype}"] = (3 * halves, 3 * halves)
            vector[f"{name}_backward/{dtype}"] = (6 * halves, 3 * halves)
            vector[f"{name}_bias_forward/{dtype}"] = (3 * halves, bias_stores * halves)
            vector[f"{name}_bias_backward/{dtype}"] = (6 * halves, 3 * halves)
    got = {
        k: (r["vector_loads"], r["vector_stores"])
        for k, r in ptx_results.items()
        if r.get("vector_loads") or r.get("vector_stores")
    }
    assert got == vector


def test_no_kernel_spills_and_elementwise_kernels_fill_half_an_sm(ptx_results):
    """Registers per thread, from NVIDIA's assembler (nvJitLink, no GPU): no kernel spills to
    local memory, and every generated float32 kernel (forward, backward, bias + activation)
    fits at least four blocks of CUDA_BLOCK_SIZE threads on an SM (half its 2048 threads),
    so that enough loads stay in flight."""
    from tests.cuda.ptx_check import blocks_per_sm

    if "registers" not in ptx_results["relu_forward/float32"]:
        pytest.skip("no nvJitLink here: pip install 'numba-cuda[cu13]'")
    spills = {k: r["spill"] for k, r in ptx_results.items() if r.get("spill")}
    assert not spills, spills
    threads = _config.CUDA_BLOCK_SIZE
    few = {
        k: r["registers"]
        for k, r in ptx_results.items()
        if k.endswith("/float32")
        and not k.startswith(("fused.", "column_sums", "probe."))  # activation kernels only
        and blocks_per_sm(r["registers"], threads) < 4
    }
    assert not few, few
    assert blocks_per_sm(32, 256) == 8 and blocks_per_sm(33, 256) == 6
    assert blocks_per_sm(64, 256) == 4 and blocks_per_sm(65, 256) == 3
    assert blocks_per_sm(16, 1024) == 2 and blocks_per_sm(64, 1024) == 1
    assert blocks_per_sm(16, 32) == 32  # the blocks-per-SM limit
