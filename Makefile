# Two entry points: `make run` (the whole study on the default config) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all
SMK_ARGS ?=
# The HTML report lands beside the results of config.yaml's model (set REPORT for another config).
MODEL  ?= $(shell sed -n 's/^model: *\([A-Za-z0-9_.-]*\).*/\1/p' config.yaml)
REPORT ?= results/$(MODEL)/report.html
DRY_RUN := $(filter -n --dry-run --dryrun,$(SMK_ARGS))

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
ifeq ($(DRY_RUN),)
	$(BIN)/snakemake --profile profiles/default --report $(REPORT) $(SMK_ARGS)
endif

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results .snakemake
