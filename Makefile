# Two entry points: `make demo` (the main job) and `make test`. Each creates .venv and installs the project first
# when needed, so either works alone on a fresh clone.
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test install clean

$(INSTALLED): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(VENV)/bin/ssr-jax demo --workdir runs/demo

# Two workers: most of the suite's time is single-threaded XLA compilation. One test module per worker at a time
# (--dist loadscope), so module fixtures (test_parallel's subprocess runs) run once; modules in the order of
# tests/conftest.py (the slowest first) rather than xdist's (the most tests first).
test: $(INSTALLED)
	$(PYTHON) -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder

clean:
	rm -rf $(VENV) .jax_cache runs/demo
