# hbkit: `make replicate` runs the notebooks end to end; `make test` runs the tests and validates notebooks.
# Both create the virtual environment (.venv) and install hbkit into it when missing or stale.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hbkit-installed
# the text toy and the image–text toy; `make replicate PROFILE=demo` runs the text part alone;
# JOBS=n: notebooks run side by side (default: 2 for the CPU toys, 1 for GPU profiles)
PROFILE ?= demo demo-image
OUTPUT_DIR ?= runs

.PHONY: env replicate test unit-test notebook-test figures bench clean

env: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "hbkit needs Python 3.10+; run make PYTHON=python3.11 ..."'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test,bench]"
	@touch $(STAMP)

replicate: $(STAMP)
	$(PY) -m hbkit.kit.replicate --profile $(PROFILE) --output-dir $(OUTPUT_DIR) $(if $(JOBS),--jobs $(JOBS))

test: unit-test notebook-test

unit-test: $(STAMP)
	HBKIT_PROGRESS=0 $(PY) -m pytest tests -q -rs; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# Executes the notebooks on the tiny `test` profile with papermill, checks the executed notebooks
# (no warnings, no stray outputs) and the figures made from them, then re-runs the executed
# notebooks under nbval (cells marked NBVAL_CHECK_OUTPUT must reproduce their outputs).
notebook-test: $(STAMP)
	HBKIT_PROGRESS=0 $(PY) -m hbkit.kit.replicate --profile test test-image --output-dir $(OUTPUT_DIR) --fresh
	HBKIT_PROGRESS=0 HBKIT_REQUIRE_EXECUTED=1 HBKIT_EXECUTED_NOTEBOOKS=$(abspath $(OUTPUT_DIR))/test/notebooks \
		HBKIT_EXECUTED_IMAGE_NOTEBOOKS=$(abspath $(OUTPUT_DIR))/test-image/notebooks \
		$(PY) -m pytest -q -rs -p no:cacheprovider tests/test_notebooks.py tests/test_image_notebooks.py tests/test_figures.py
	HBKIT_PROGRESS=0 $(PY) -m pytest -q -p no:cacheprovider --nbval-lax $(OUTPUT_DIR)/test/notebooks $(OUTPUT_DIR)/test-image/notebooks

# The README's figures (docs/*.png) from a finished replication: `make replicate` first (demo by default).
figures: $(STAMP)
	$(PY) -m hbkit.kit.figures --profile $(firstword $(PROFILE)) --output-dir $(OUTPUT_DIR) --to docs

bench: $(STAMP)
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_search.py
	$(PY) bench/bench_tlm.py
	$(PY) bench/bench_image_text_eval.py
	$(PY) bench/bench_xtd10_crosslingual.py
	$(PY) bench/bench_clip_train.py
	$(PY) bench/bench_albef.py

clean:
	rm -rf $(OUTPUT_DIR)/test $(OUTPUT_DIR)/test-image
