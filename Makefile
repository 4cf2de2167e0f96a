# payments-lab: `make lab` opens JupyterLab with a Temporal server ready; `make test` runs every test.
# Both create .venv and install the kit into it first (only when pyproject.toml changed).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.payments-lab-installed
# JupyterLab's port for `make lab` (`make lab PORT=8890` when 8888 is taken).
PORT ?= 8888

.PHONY: install bytecode lab test bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("payments-lab needs Python 3.11 or newer: run make with PYTHON=python3.11" if sys.version_info < (3, 11) else 0)'
	@$(PYTHON) -c 'import sys; sys.version_info >= (3, 14) and print("note: payments-lab is tested on Python 3.11 to 3.13, this is %d.%d; if something fails: make clean lab PYTHON=python3.13" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

# Bytecode written ahead (even where PYTHONDONTWRITEBYTECODE is set) spares every process,
# kernel and worker its start-up compile, and gives the bench's bare workflow, which Temporal's
# sandbox re-imports for every run, its bytecode (the kit's workers keep theirs: payments_lab.bytecode).
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q payments_lab bench

lab: bytecode
	$(BIN)/payments-lab lab --port $(PORT)

test: bytecode
	$(BIN)/ruff check payments_lab tests tools bench conftest.py
	$(BIN)/mypy
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

bench: bytecode
	@for script in bench/throughput.py bench/throughput_attribution.py bench/latency.py bench/dispatch_stall.py bench/history_flatten.py bench/retry_gaps.py bench/lessons_nbval.py bench/faults.py bench/room.py bench/search_attribute_cache.py bench/workflow_load.py; do \
		echo "== $$script"; $(BIN)/python $$script || exit 1; done
	@echo "== bench/history_flatten.py --histories 10000 (minutes: 10,000 payments run first)"; \
		$(BIN)/python bench/history_flatten.py --histories 10000

clean:
	rm -rf $(VENV)
