# The fresh-machine path: `make demo` and `make test` need only python3 and make.
# .venv is created on first use; a stamp file per install makes later runs skip pip until
# pyproject.toml changes.

VENV := .venv
PY := $(VENV)/bin/python
BASE_STAMP := $(VENV)/.dlc-installed
DEV_STAMP := $(VENV)/.dlc-installed-dev

.PHONY: demo test clean-venv

demo: $(BASE_STAMP)
	$(VENV)/bin/dlc demo

# pytest's own exit status fails the recipe, so "no tests collected" (5) fails `make test`.
# one BLAS thread: the suite runs many small products, where threads only add overhead
test: $(DEV_STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q

$(PY):
	python3 -m venv $(VENV)

$(BASE_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e .
	touch $@

# the dev extra includes the base install, so it refreshes both stamps
$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $@ $(BASE_STAMP)

clean-venv:
	rm -rf $(VENV)
