PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: demo test bench clean

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[dev,cli,export]'
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/demo.py --root data/synth --out runs/demo

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadgroup -q

bench: $(VENV)/.installed
	$(PY) benchmarks/loader.py

clean:
	rm -rf $(VENV) runs data/synth
