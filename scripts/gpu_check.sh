#!/usr/bin/env bash
# One prepared GPU check (about 5 minutes): the CUDA tests and the CUDA benchmark.
# Run on a machine with an NVIDIA GPU from the repository root:  bash scripts/gpu_check.sh
# Logs go to $OUT (if set) or ./gpu-check/.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python3}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$out/gpu-info.log"
timeout 240 "$py" -m pytest -q -p no:cacheprovider tests/test_training_cuda.py tests/test_data_stream_device.py -rs 2>&1 | tee "$out/gpu-tests.log"
tests_rc=${PIPESTATUS[0]}
timeout 300 "$py" scripts/bench.py --device cuda --only digits,cifar --reps 3 2>&1 | tee "$out/gpu-bench.log"
bench_rc=${PIPESTATUS[0]}
# end to end on the GPU: the default train and sanity commands (streaming == in-memory is a CUDA test above)
work="$(mktemp -d)"
TIMEFORMAT="wall %R s"
(cd "$work" && time (timeout 120 "$py" -m nntrain train --set device=cuda 2>&1 | tail -4)) 2>&1 | tee "$out/gpu-train.log"
(cd "$work" && time (timeout 120 "$py" -m nntrain sanity --set device=cuda 2>&1 | tail -10)) 2>&1 | tee "$out/gpu-sanity.log"
echo "gpu_check: tests rc=$tests_rc bench rc=$bench_rc"
exit $(( tests_rc != 0 || bench_rc != 0 ))
