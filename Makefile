# Every target bootstraps .venv itself (pinned deps), so each works on a fresh clone.
PY        ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
DEVICE    ?= cpu
RECIPE    ?= default
ARGS      ?=
export OMP_NUM_THREADS ?= 2

.PHONY: setup test test-slow aarch64-userland test-aarch64 fuzz lint export bench bench-quick reference clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# The layer contracts (pyproject [tool.importlinter], docs/DESIGN.md "Layers") are part of the tests.
test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -m "not slow" -q $(ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q $(ARGS)

# A real arm64 Python + numpy + ONNX Runtime under qemu-user (docs/AARCH64.md): the set-up is
# cached in ~/.cache/edgeskel-aarch64; the test runs a raspberry-pi-5 bundle there over SSH.
aarch64-userland: $(STAMP)
	bash scripts/aarch64-userland.sh

test-aarch64: aarch64-userland
	$(BIN)/python -m pytest tests/test_remote_aarch64.py -q $(ARGS)

fuzz: $(STAMP)
	EDGESKEL_FUZZ_EXAMPLES=2000 $(BIN)/python -m pytest tests -k fuzz -q $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check edgeskel tests
	$(BIN)/lint-imports --no-cache

# make exits 2 whenever a command fails, whatever its code; edgeskel's own exit code (1 FAILED,
# 2 usage, 3 NOT MEASURED) is printed, and scripts run $(BIN)/edgeskel directly to read it.
EXPORT_CMD = $(BIN)/edgeskel export --device $(DEVICE) --recipe $(RECIPE) $(ARGS)
export: $(STAMP)
	@echo "$(EXPORT_CMD)"
	@$(EXPORT_CMD); rc=$$?; if [ $$rc -ne 0 ]; then \
	  echo "edgeskel exited $$rc (1 FAILED, 2 usage/input error, 3 NOT MEASURED);" >&2; \
	  echo "make turns it into 2: to read it in a script, run" >&2; \
	  echo "  $(EXPORT_CMD)" >&2; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/edgeskel bench $(ARGS)

bench-quick: $(STAMP)
	$(BIN)/edgeskel bench --quick $(ARGS)

clean:
	rm -rf runs .pytest_cache
