#!/usr/bin/env bash
# The training paths users run, checked on one CUDA GPU in a few minutes (the CPU suite reaches FSDP1 only
# through a test shim, and bf16 not at all):
#   - Composer's FSDP1 in bf16: 4 microbatches update as 1 (token-weighted accumulation), meta init
#   - LoRA under FSDP1: the checkpoint holds the adapter, the export is the adapter
#   - the NaN guard stops before the poisoned batch's update and checkpoint
#   - the attention backends (triton compiled, flex) against fp64 references
#
#   bash scripts/bench/gpu_training_check.sh [> docs/gpu-training-check.txt]
set -euo pipefail
cd "$(dirname "$0")/../.."
python -c "import torch; assert torch.cuda.is_available(), 'needs a CUDA GPU'; print(torch.cuda.get_device_name())"
start=$(date +%s)
python -m pytest -q -m gpu -p no:cacheprovider --timeout 420 tests/training/test_gpu.py tests/attention "$@"
echo "gpu training check: $(( $(date +%s) - start )) s"
