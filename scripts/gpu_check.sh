#!/usr/bin/env bash
# One prepared GPU check (under 5 minutes on one GPU): everything CUDA-specific nntrain has.
# Run on a machine with an NVIDIA GPU from the repository root:  bash scripts/gpu_check.sh
# Logs go to $OUT (if set) or ./gpu-check/, one file per step (7 files):
#   gpu-info     card, driver, torch
#   gpu-tests    the CUDA tests (tests/test_training_cuda.py, the device-parametrized streaming tests,
#                predict on the GPU), which are skipped on a CPU-only machine
#   gpu-bench    per-epoch ratio vs the bare loop: digits and CIFAR-shaped, fp32 and bf16
#   gpu-train    `nntrain train` (default config) on CUDA: accuracy, wall, summary.json
#   gpu-sanity   `nntrain sanity` on CUDA (8 checks)
#   gpu-predict  predict throughput with the model on the GPU vs a bare Pillow + PyTorch loop
#   gpu-parity   the trained run exported to ONNX; checkpoint on CUDA and .onnx vs the checkpoint on CPU
# Not included (about 1.5 minutes more on an H100): where a per-epoch gap on CUDA comes from,
#   python3 scripts/bench_epoch_parts.py --device cuda   (bare loop / nntrain's loop / fit / fit + run dir)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python3}"
TIMEFORMAT="wall %R s"
fails=()
step() {  # step NAME SECONDS COMMAND...: run, log to $out/NAME.log, remember a failure
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*" | tee "$out/$name.log"
  { time timeout "$limit" "$@"; } 2>&1 | tee -a "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || fails+=("$name (rc $rc)")
}
step gpu-info 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader;
  $py -c 'import torch; print(\"torch\", torch.__version__, torch.cuda.get_device_name(0))'"
step gpu-tests 170 "$py" -m pytest -q -p no:cacheprovider -rs tests/test_training_cuda.py \
  tests/test_data_stream_device.py tests/test_deploy_edges.py::test_predict_on_another_device_gives_the_cpu_result
step gpu-bench 150 "$py" scripts/bench.py --device cuda --only digits,cifar --reps 3
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
step gpu-train 90 bash -c "cd '$work' && $py -m nntrain train --set device=cuda 2>&1 | tail -8 && cat runs/*/summary.json"
step gpu-sanity 90 bash -c "cd '$work' && $py -m nntrain sanity --set device=cuda 2>&1 | tail -16"
step gpu-predict 90 "$py" scripts/bench_predict.py --device cuda --n 5000
run_dir="$(ls -d "$work"/runs/*/ 2>/dev/null | head -1)"
step gpu-parity 120 bash -c "$py -m nntrain export '$run_dir' --format onnx --out '$work/model.onnx' &&
  $py scripts/check_parity.py '$run_dir' --device cuda --export '$work/model.onnx'"
echo "gpu_check: ${#fails[@]} step(s) failed: ${fails[*]:-none}"
[ "${#fails[@]}" -eq 0 ]
