#!/usr/bin/env bash
# Everything a lent GPU should run, as one prepared command (a session has ~15 minutes of GPU):
#
#   bash bench/gpu_all.sh [OUTDIR]          # ~9 minutes at most; OUTDIR defaults to results/gpu
#   SIMULATE=1 bash bench/gpu_all.sh /tmp/g # a dry run here, under numba's CUDA simulator
#                                           # (small sizes, no MLP, a few tests: ~3 minutes)
#
# In order of what the tables need most: every kernel checked against the CPU and timed
# (bench/gpu.py, the tables of docs/gpu.md; float32 first, each row printed as measured),
# loop shapes of the elementwise kernels (bench/gpu_loops.py), the MLP epoch
# (bench/gpu_mlp.py), the CUDA tests on the GPU (FASTACT_CUDA_TESTS=1; not the ones gpu.py
# covers, nor those that need no GPU and run in `make test`), then the host's share of an MLP
# step on this machine's CPU (bench/gpu_host_cost.py: no GPU used). Each step's output goes
# to OUTDIR/<step>.txt and to the terminal, under a time limit of its own (530 s in
# all); a step that fails or runs out of time does not stop the next (gpu.py
# prints what it measured when its limit cuts it short). Python: $PYTHON, else python3.
# numba-cuda 0.30 does not import with NumPy 2.5: where the machine has 2.5, put NumPy 2.4
# first on PYTHONPATH.
set -u
out=${1:-results/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
sim=()
test_env=(FASTACT_CUDA_TESTS=1)
# gpu.py checks every kernel against the CPU; the PTX and launch tests need no GPU
tests=(tests/cuda --deselect tests/cuda/test_cuda_bench.py --deselect tests/cuda/test_cuda_ptx.py
    --deselect tests/cuda/test_cuda_launch.py -k "not matches_cpu and not match_cpu")
if [ "${SIMULATE:-0}" != 0 ]; then
    sim=(--simulate)
    test_env=(NUMBA_ENABLE_CUDASIM=1)
    tests=(tests/cuda/test_cuda_sim.py -k "relu and not bias and not matches_cpu")
fi
export PYTHONUNBUFFERED=1
status=0

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s): $*"
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$out/$name.txt"  # -k: gpu.py catches SIGTERM
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/$name.txt"
    [ "$rc" = 0 ] || status=1
}

{
    "$py" -c "import numba, numpy; from numba import cuda; print('numba', numba.__version__, \
'numpy', numpy.__version__, 'cuda available:', cuda.is_available())"
    "$py" -c "from importlib.metadata import version as v
for p in ('numba-cuda', 'cupy-cuda12x', 'cupy-cuda13x', 'cupy', 'torch', 'nvidia-cuda-nvrtc-cu12'):
    try: print(p, v(p))
    except Exception: pass"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    lscpu 2>/dev/null | grep -E "^(Model name|CPU\(s\))"
} 2>&1 | tee "$out/versions.txt"
step kernels 220 "$py" bench/gpu.py "${sim[@]}"
step loops 95 "$py" bench/gpu_loops.py "${sim[@]}"
[ -n "${sim[*]}" ] || step mlp 85 "$py" bench/gpu_mlp.py
step tests 90 env "${test_env[@]}" "$py" -m pytest -v -p no:cacheprovider "${tests[@]}"
step host 40 env -u NUMBA_ENABLE_CUDASIM "$py" bench/gpu_host_cost.py --repeat 3 --only relu --numba-arguments
exit $status
