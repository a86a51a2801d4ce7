#!/usr/bin/env bash
# The GPU smoke run: every stage of recipes/gpu_smoke.yaml through its GPU code on one CUDA GPU (vLLM engines on
# CUDA, DeepSpeed ZeRO-2 distill in bf16, OpenRLHF's PPO colocated on the GPU with our exported RM, evaluation
# with vLLM on the GPU), then one PASS/FAIL line per stage and the wall times.
#
#   ray_cluster/gpu_smoke.sh                 # fresh machine: makes .venv-gpu, installs the GPU stack, runs
#   ray_cluster/gpu_smoke.sh --skip-install  # use the python on PATH (or $PYTHON) as it is
#   ray_cluster/gpu_smoke.sh --check         # everything before CUDA: tools, recipe, dry run; no GPU needed
#
# Environment: PYTHON (interpreter that makes the venv, default python3), VENV (default .venv-gpu), RECIPE,
# RUN_DIR (default runs/gpu_smoke), RLHF_STACK_CACHE (converted models; default .cache), FLASH_ATTN=1.
#
# What it installs (the same stack the CPU development environment pins, in its CUDA builds): vllm 0.32.0 from
# PyPI, which brings its CUDA torch; the project; DeepSpeed, Ray and the imports OpenRLHF needs; openrlhf 0.11.2
# without its dependencies (it pins transformers 5.15.0, vLLM 0.32 needs a newer one; its loaders and trainer run on
# the newer one, tests/contract). OpenRLHF also imports flash-attn, which builds only against a local CUDA
# toolkit (FLASH_ATTN=1 tries, up to 30 min); the recipe's attention (sdpa) needs only flash-attn's padding helpers
# at import time, and the project's pure-torch versions of them (tests/contract/flash_attn_standin) stand in.
# Exit status: 0 all stages passed (or --check passed), 1 a stage failed, 2 no usable GPU, 3 cannot install.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RECIPE="${RECIPE:-$REPO/recipes/gpu_smoke.yaml}"
STANDIN="$REPO/tests/contract/flash_attn_standin"
STAGES=(synthesize distill ppo evaluate)
VLLM_VERSION=0.32.0
OPENRLHF_VERSION=0.11.2

mode=run
install=1
for arg in "$@"; do
  case "$arg" in
    --check) mode=check ;;
    --skip-install) install=0 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_smoke: unknown argument '$arg' (known: --check, --skip-install, --help)" >&2; exit 64 ;;
  esac
done

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$REPO/.venv-gpu}"
RUN_DIR="${RUN_DIR:-$REPO/runs/gpu_smoke}"
export RLHF_STACK_CACHE="${RLHF_STACK_CACHE:-$REPO/.cache}"
export VLLM_CACHE_ROOT="${VLLM_CACHE_ROOT:-$RLHF_STACK_CACHE/vllm}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$RLHF_STACK_CACHE/torch_extensions}"
LOG_DIR="$RUN_DIR/_smoke_logs"

say() { printf 'gpu_smoke: %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
start_all=$(now)

# -- 1. tools ---------------------------------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || { say "cannot run: no '$PYTHON' (set PYTHON to a Python 3.11 interpreter)"; exit 3; }
py_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$py_version" = "3.11" ] || say "warning: $PYTHON is Python $py_version; the project is tested on 3.11"
if [ "$mode" = run ]; then
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    say "cannot run: no NVIDIA GPU here (nvidia-smi missing or failing); --check runs the part before CUDA"
    exit 2
  fi
  say "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
  command -v nvcc >/dev/null || say "note: no nvcc on PATH; DeepSpeed ops that need a JIT build (FusedAdam) may fail"
fi

# -- 2. environment ---------------------------------------------------------------------------------------------
install_start=$(now)
if [ "$mode" = run ] && [ "$install" = 1 ]; then
  mkdir -p "$LOG_DIR"
  pip_log="$LOG_DIR/install.log"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" \
    || { say "cannot install: '$PYTHON -m venv $VENV' failed"; exit 3; }
  PY="$VENV/bin/python"
  pip() { "$PY" -m pip "$@" >>"$pip_log" 2>&1; }
  say "installing the GPU stack into $VENV (log: $pip_log)"
  pip install -U pip \
    && pip install "vllm==$VLLM_VERSION" \
    && DS_BUILD_OPS=0 pip install -e "$REPO" "deepspeed>=0.19.6" "ray[default]>=2.55" "datasets>=4" \
         "accelerate>=1.10" "gguf>=0.10" "matplotlib>=3.8" "tensorboard>=2.15" "aiohttp>=3.9" "fastapi>=0.110" \
         "uvicorn>=0.27" "scikit-learn>=1.3" "scipy>=1.11" pylatexenc torchdata peft einops jsonlines loralib \
         optree pynvml torchmetrics \
    && pip install --no-deps "openrlhf==$OPENRLHF_VERSION" \
    || { say "cannot install: pip failed (last lines of $pip_log below); check the package index is reachable"
         tail -n 15 "$pip_log"; exit 3; }
  if [ "${FLASH_ATTN:-0}" = 1 ]; then  # a source build takes long; the recipe's sdpa attention does not need it
    timeout 1800 "$PY" -m pip install --no-build-isolation "flash-attn==2.8.3" >>"$pip_log" 2>&1 \
      && say "flash-attn 2.8.3 installed" || say "flash-attn did not install (see $pip_log)"
  fi
  export PATH="$VENV/bin:$PATH"  # the PPO job runs `python3 -m openrlhf...`: it must find this environment
else
  PY="$(command -v "$PYTHON")"  # --skip-install or --check: the interpreter as it is
fi
if ! "$PY" -c 'import flash_attn' 2>/dev/null; then
  [ "$mode" = run ] && say "no flash-attn: OpenRLHF's imports of its padding helpers come from $STANDIN"
  export PYTHONPATH="$STANDIN${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
install_s=$(since "$install_start")
"$PY" -c 'import rlhf_stack.app.cli' 2>/dev/null \
  || { say "cannot run: $PY does not import the project (install it, or drop --skip-install)"; exit 3; }
cli() { "$PY" -m rlhf_stack.app.cli "$@"; }

# -- 3. recipe and plan (no GPU needed) -------------------------------------------------------------------------
cli validate "$RECIPE" --set "run_dir=$RUN_DIR" >/dev/null || { say "FAIL: $RECIPE does not validate"; exit 1; }
say "recipe $RECIPE validates"
if [ "$mode" = check ]; then
  plan_dir="$(mktemp -d)"
  cli run "$RECIPE" --only synthesize --dry-run --set "run_dir=$plan_dir" >/dev/null 2>&1 \
    || { say "FAIL: the dry run of synthesize did not plan"; rm -rf "$plan_dir"; exit 1; }
  rm -rf "$plan_dir"
  say "dry run of synthesize plans; check mode: stopping before CUDA"
  exit 0
fi

if ! "$PY" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device (CPU build, or a driver older than its CUDA)")
import vllm, deepspeed, openrlhf.cli.train_ppo_ray  # noqa: E401,F401  the imports the four stages need
print(f"gpu_smoke: torch {torch.__version__} (CUDA {torch.version.cuda}), vllm {vllm.__version__}, "
      f"deepspeed {deepspeed.__version__} on {torch.cuda.get_device_name(0)}")
EOF
then
  say "cannot run: the GPU stack does not import (see above)"; exit 3
fi

# -- 4. model conversion, then the stages -----------------------------------------------------------------------
mkdir -p "$LOG_DIR"
convert_start=$(now)
"$PY" -c "from pathlib import Path; from rlhf_stack.core.models import ModelSpec, resolve_model; \
print(resolve_model(ModelSpec(source='smollm2-135m-instruct'), Path('.')))" >"$LOG_DIR/convert.log" 2>&1 \
  || { say "FAIL model conversion (log: $LOG_DIR/convert.log)"; tail -n 15 "$LOG_DIR/convert.log"; exit 1; }
convert_s=$(since "$convert_start")
say "model converted in ${convert_s} s"

failed=""
results=()
for stage in "${STAGES[@]}"; do
  if [ -n "$failed" ]; then
    results+=("SKIP $stage (needs $failed)"); continue
  fi
  stage_start=$(now)
  if cli run "$RECIPE" --only "$stage" --set "run_dir=$RUN_DIR" >"$LOG_DIR/$stage.log" 2>&1; then
    results+=("PASS $stage $(since "$stage_start") s")
  else
    results+=("FAIL $stage $(since "$stage_start") s (log: $LOG_DIR/$stage.log)")
    tail -n 20 "$LOG_DIR/$stage.log"
    failed=$stage
  fi
  say "${results[-1]}"
done

echo "== gpu_smoke summary =="
printf '%s\n' "${results[@]}"
echo "install ${install_s} s, model conversion ${convert_s} s, total $(since "$start_all") s; run folder $RUN_DIR"
[ -z "$failed" ]
