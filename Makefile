# deepkb: `make demo` installs into .venv, ingests data/ and answers a sample question; `make test` runs pytest.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# TORCH=auto picks a CUDA build when nvidia-smi is present and the CPU build otherwise;
# TORCH=skip keeps whatever torch is installed (Jetson: install NVIDIA's JetPack wheel first).
TORCH ?= auto
DEMO_KB := .deepkb-demo
QUESTION ?= What does the retention policy say about backups?

.PHONY: install demo test bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@if [ "$(TORCH)" = skip ]; then echo "keeping the installed torch"; \
	elif [ "$(TORCH)" = cuda ] || { [ "$(TORCH)" = auto ] && command -v nvidia-smi >/dev/null 2>&1; }; then \
		$(BIN)/pip install "torch==$(TORCH_VERSION)"; \
	else \
		$(BIN)/pip install "torch==$(TORCH_VERSION)+cpu" 2>/dev/null || \
		$(BIN)/pip install "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/pip install -e ".[tui,test,dev]"
	touch $@

demo: install
	$(BIN)/deepkb --kb $(DEMO_KB) ingest data
	$(BIN)/deepkb --kb $(DEMO_KB) search "$(QUESTION)" -k 3
	@if $(BIN)/deepkb --help | grep -q " ask "; then $(BIN)/deepkb --kb $(DEMO_KB) ask "$(QUESTION)"; fi

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check deepkb tests bench
	$(BIN)/ruff format --check deepkb tests bench

clean:
	rm -rf $(VENV) $(DEMO_KB) .pytest_cache build *.egg-info
