#!/usr/bin/env bash
# The CUDA checks of debiascl in one run, for a machine with a GPU and PyTorch (no install
# needed: it runs from src/). Not yet run on a GPU; estimated at a few minutes on one H200.
#
#   bash benchmarks/gpu_check.sh            # logs and tables go to ./gpu-check/
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# 1. tests/test_cuda.py and the CUDA cases of tests/test_views.py: losses on CUDA equal CPU,
#    bf16/fp16 autocast, training in 32/bf16/fp16 with resume, channels_last, torchrun on the GPU,
#    an NCCL gather;
# 2. a real run under torchrun: WCL with ResNet-18 in bf16 on biased-digits, then its evaluation;
# 3. the step-time and loss benchmarks on the GPU;
# 4. the view pipeline and the image-folder data path with the views on the GPU (the data
#    path's later epochs against torchvision's per-sample path with as many loader workers).
# Every step runs even when one before it failed; the exit status is 1 when any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
failed=()

# Run "$@" with its output shown and kept in "$out/<log>"; remember it when it fails.
check() {
  local log=$1
  shift
  echo "== $*"
  if ! "$@" 2>&1 | tee "$out/$log"; then
    failed+=("$log")
  fi
}

check gpu.log "$python" -c "import torch; print(torch.__version__, torch.version.cuda, \
torch.cuda.get_device_name(0), f'{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB')"
check tests.log "$python" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_views.py
check train.log "$python" -m torch.distributed.run --standalone --nproc-per-node 1 -m debiascl \
  train --dataset biased-digits --method wcl --out "$out/run" --epochs 20 --device cuda \
  --set train.precision=bf16 --set model.backbone=resnet18 --set model.cifar_stem=true \
  --set train.progress=false
check eval.log "$python" -m debiascl eval "$out/run" --device cuda
check train_step.md "$python" benchmarks/train_step.py --device cuda --backbone resnet18 \
  --batch-size 256 --image-size 32 --steps 10 --rounds 5
check losses.md "$python" benchmarks/losses.py --device cuda --batch-sizes 256 1024 4096
check augment.md "$python" benchmarks/augment.py --device cuda --workers 0 8
check data.md "$python" benchmarks/data.py --device cuda --repeats 2

if ((${#failed[@]})); then
  echo "gpu_check: FAILED: ${failed[*]} (logs in $out/)"
  exit 1
fi
echo "gpu_check: all passed (logs in $out/)"
