#!/usr/bin/env bash
# Issue 16: the GPU measurements, ready to run on one CUDA machine (installs nothing; run from the repository root
# with the project's Python on PATH or in $PYTHON). Writes JSON under $OUT (default: ./gpu-check-out).
#   1. the waveform cache loader alone: clips/s with 0/4/8 workers, pinned memory, non_blocking copies;
#   2. throughput at batch 32 and 128 over 5,000 synthetic clips: isolated step vs bare forward+backward, the
#      per-section breakdown (synchronized), and one epoch of the real loop (train()) against the isolated step;
#   3. the same with bf16 autocast is NOT a flag of throughput.py: run `reprogram run ... --set
#      training.autocast=bf16` for that (see benchmarks/README.md, GPU section).
set -euo pipefail
PYTHON=${PYTHON:-python}
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
"$PYTHON" benchmarks/loader.py --synthetic --device cuda --workers 0,4,8 --clips 5000 --batch 128 --repeats 2 \
  --json "$OUT/loader.json"
for B in 32 128; do
  "$PYTHON" benchmarks/throughput.py --synthetic --device cuda --batch "$B" --repeats 20 --clips 5000 \
    --num-workers 4 --methods lora_qv_r8,prompt_p8,wave_program,pad_linear --json "$OUT/throughput-b$B.json"
done
echo "results in $OUT"
