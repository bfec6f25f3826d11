# Two entry points: `make run` (the whole study on the default config) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all
SMK_ARGS ?=

.PHONY: run test sysdeps venv lint clean-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# System libraries: FluidSynth renders the synthetic music world.
sysdeps:
	@bash scripts/ensure_sysdeps.sh

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[workflow,test]"
	touch $@

venv: sysdeps $(VENV)/.installed

run: venv
	$(BIN)/snakemake --cores $(CORES) --profile profiles/default $(SMK_ARGS)

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results .snakemake
