# The two commands of the README: `make demo` and `make test`.
# Every pip call goes through the constraints file so torch stays pinned (no CUDA download).
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PIP = $(VENV)/bin/python -m pip
PIP_INSTALL = $(PIP) install --quiet -c $(CONSTRAINTS)
DEMO_OUT ?= demo_output

.PHONY: demo test lint bench robustness clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Installed marker files: re-install only when the package metadata or the pins change.
$(VENV)/.installed: $(VENV)/bin/python pyproject.toml $(CONSTRAINTS)
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_INSTALL) -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/eochange demo --out $(DEMO_OUT)

test: $(VENV)/.installed-test
	$(VENV)/bin/python -m pytest -q

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: $(VENV)/.installed-test
	$(VENV)/bin/python benchmarks/loader.py
	$(VENV)/bin/python benchmarks/prepare.py
	$(VENV)/bin/python benchmarks/metrics.py
	$(VENV)/bin/python benchmarks/models.py
	$(VENV)/bin/python benchmarks/training.py
	$(VENV)/bin/python benchmarks/semisupervised.py
	$(VENV)/bin/python benchmarks/mapping.py
	$(VENV)/bin/python benchmarks/sen12ms.py
	$(VENV)/bin/python benchmarks/preprocessing.py
	$(VENV)/bin/python benchmarks/ercnn.py
	$(VENV)/bin/python benchmarks/monitor.py

# The full robustness set (kill -9 points, fuzzed inputs, memory at three sizes) and its page.
robustness: $(VENV)/.installed-test
	$(PIP_INSTALL) --only-binary atheris -e ".[test,fuzz]" || echo "atheris has no wheel here: its fuzz tests skip"
	rm -rf build/robustness
	$(VENV)/bin/python -m pytest -q tests/robustness --robustness-full --timeout 3600
	$(VENV)/bin/python tests/robustness/report.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info src/*.egg-info
