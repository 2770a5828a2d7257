#!/usr/bin/env bash
# GPU throughput of the trainable loop vs a plain timm loop, of the JPEG loader, and
# data-parallel scaling (the trainable loop on 1 GPU vs all GPUs of the machine).
#
#   bash bench/gpu.sh                 # resnet50 + vit_base_patch16_224, 224 px, bf16, channels_last
#   bash bench/gpu.sh --compile       # the same under torch.compile (adds a few minutes)
#   bash bench/gpu.sh --cpu-smoke     # the tiny CPU path (what tests/test_bench_gpu.py runs)
#
# Expected cost: about 2-3 minutes on one H100 (eager) plus ~1 minute of scaling,
# under the 8-minute budget; hard timeouts stop the two parts at 5m45s and 1m50s
# (7m35s in all), and rows print as they land, so a cut-off run still shows what
# it measured. Writes the log to $OUT/bench_gpu.txt
# when $OUT is set (the device tool's output folder), else to ${TMPDIR:-/tmp}/bench_gpu.txt.
# Needs python with torch, torchvision, timm, pillow, numpy, scikit-learn, scipy,
# pandas, filelock (the device image has them); runs from the source tree, no install.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_USAGE_STATS_ENABLED=0 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
LOG="${OUT:-${TMPDIR:-/tmp}}/bench_gpu.txt"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,utilization.gpu \
    --format=csv | tee "$LOG" || true
else
  : > "$LOG"
fi
"$PYTHON" -c 'import torch, timm, torchvision; print("torch", torch.__version__, "timm", timm.__version__, "torchvision", torchvision.__version__, "cuda", torch.cuda.is_available())' | tee -a "$LOG"
timeout --signal=INT --kill-after=10 345 "$PYTHON" bench/bench_gpu.py "$@" 2>&1 | tee -a "$LOG" || true
# The scaling line: the trainable loop on 1 GPU vs all of them (DDP, NCCL).
timeout --signal=INT --kill-after=10 110 "$PYTHON" bench/bench_scaling.py "$@" 2>&1 | tee -a "$LOG"
