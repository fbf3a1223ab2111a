#!/usr/bin/env bash
# The device check: run once on a lent GPU machine, from a fresh copy of the repository.
#
#   bash benchmarks/gpu_check.sh [KIT]    # KIT: the PyCUDA kit folder (default ../shared/device)
#
# Environment: GPU_TESTS_S and GPU_STEP_S (each stage's time limit, s), GPU_STEP_ARGS (options of
# gpu_step.py), PYCUDA_INSTALL (an installer to source instead of KIT/install-pycuda.sh).
#
# Builds PyCUDA from the kit (no package index there), runs the tests marked gpu, then
# times a training step of the two-tower AlexNet and the CIFAR net at batch 128 with
# netdsl's cuda backend (fp32, tf32 and bf16 products) beside the PyTorch twin on the same
# card (benchmarks/gpu_step.py), and sets the time model's prediction beside each measured
# kernel family (benchmarks/model_check.py).
# Logs and the figures as JSON go to $OUT when it is set (else ./gpu-check). Each stage has
# its own time limit, so one that hangs cannot eat the others' time.
set -u
cd "$(dirname "$0")/.."
kit=${1:-../shared/device}
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 NETDSL_CACHE=/tmp/netdsl-cache
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/nvidia-smi.txt"
t0=$SECONDS
# PYCUDA_INSTALL names another installer to source (a prebuilt PyCUDA that falls back to the kit's build).
source "${PYCUDA_INSTALL:-$kit/install-pycuda.sh}" || exit 1
echo "pycuda built in $((SECONDS - t0)) s"
t0=$SECONDS
timeout "${GPU_TESTS_S:-200}" python3 -m pytest -m gpu -q -rs -p no:cacheprovider 2>&1 | tee "$out/pytest-gpu.log" | tail -n 40
echo "pytest -m gpu: $((SECONDS - t0)) s"
t0=$SECONDS
timeout "${GPU_STEP_S:-240}" python3 benchmarks/gpu_step.py --json "$out/gpu_step.json" ${GPU_STEP_ARGS:-} 2>&1 | tee "$out/gpu_step.log"
echo "gpu_step: $((SECONDS - t0)) s"
# The time model's prediction per kernel family beside what was just measured (needs no GPU).
timeout 120 python3 benchmarks/model_check.py "$out/gpu_step.json" 2>&1 | tee "$out/model_check.log"
