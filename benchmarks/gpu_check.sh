#!/usr/bin/env bash
# The CUDA paths, checked on a GPU machine in one go (the device tool; see BENCHMARKS.md).
# Needs a python3 with torch+CUDA, transformers and pytest; the rest of the project's requirements
# travel as cp312 wheels in .whl/ (installed to /tmp/site). Logs go to $OUT (or ./gpu-out).
#   1. the training, generation and sampling tests, run on the GPU (pick_device() takes CUDA)
#   2. the generation benchmark on the GPU
#   3. the real-model figures (benchmarks/bench_gpu.py): GPT-2 124M training MFU in bf16 (compile off
#      and on) vs a bare loop, Qwen2-0.5B-shaped full vs LoRA fine-tuning (tokens/s, peak memory),
#      256 mixed prompts x 256 new tokens: torch engine vs one HF generate call vs vLLM (if installed)
#   4. a whole nightly run (`draftflow run`) with a 1-minute training budget
# GPU_CHECK_STEPS picks some of them: "tests bench gpu run" (the default: all).
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DRAFTFLOW_HOME=/tmp/draftflow-gpu PREFECT_HOME=/tmp/prefect-gpu
status=0
steps=" ${GPU_CHECK_STEPS:-tests bench gpu run} "
step() {  # step NAME LOG COMMAND...: run, keep the log, remember a failure, go on
  local name=$1 log=$OUT/$2 started=$SECONDS; shift 2
  echo "== $name"; "$@" 2>&1 | tee "$log"; local rc=${PIPESTATUS[0]}
  echo "== $name: rc=$rc in $((SECONDS - started)) s" | tee -a "$OUT/summary.txt"; [ "$rc" -eq 0 ] || status=1
}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0), 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/env.txt"
[[ $steps == *" tests "* ]] && step "tests on the GPU" tests.log timeout 200 python3 -m pytest -q -p no:cacheprovider -m "not slow" \
  tests/test_sampling.py tests/test_generate.py tests/test_finetune.py tests/test_training.py \
  tests/test_lora.py tests/test_chat.py tests/test_engines.py
[[ $steps == *" bench "* ]] && step "generation benchmark" bench_generate.log timeout 120 python3 -m benchmarks.bench_generate
[[ $steps == *" gpu "* ]] && step "real-model figures" bench_gpu.log timeout 240 python3 -m benchmarks.bench_gpu
[[ $steps == *" run "* ]] && step "nightly run" run.log timeout 150 python3 -m flows.cli run --max-train-minutes 1 --json
exit $status
