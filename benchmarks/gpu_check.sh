#!/usr/bin/env bash
# The GPU check of issue #12 (item 5): score time per candidate (VGG16, ResNet18, CIFAR-shaped),
# 1/2/4 evaluators sharing one GPU, channels_last and mixed precision, GPU utilisation.
# About 3-4 minutes on one CUDA GPU; prints the tables and writes them under --out.
#
#   bash benchmarks/gpu_check.sh --out gpu-check            # on a machine with one CUDA GPU
#   bash benchmarks/gpu_check.sh --dry-run --out /tmp/gc   # CPU, tiny sizes: checks the script only
#
# Options: python benchmarks/gpu_check.py --help. PYTHON picks the interpreter (default: python).
set -euo pipefail
exec "${PYTHON:-python}" "$(dirname "${BASH_SOURCE[0]}")/gpu_check.py" "$@"
