PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torchcodec loads FFmpeg from the system; PyAV's bundled copy is linked here for it.
FFMPEG_LIBS := $(abspath $(VENV))/ffmpeg
RUN := LD_LIBRARY_PATH=$(FFMPEG_LIBS)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH} $(PY)

.PHONY: demo test bench clean

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[dev,cli,export,video]'
	$(PY) tools/link_pyav_ffmpeg.py $(FFMPEG_LIBS)
	touch $@

demo: $(VENV)/.installed
	$(RUN) examples/demo.py --root data/synth --out runs/demo

test: $(VENV)/.installed
	$(RUN) -m pytest -n 2 --dist loadgroup -q

bench: $(VENV)/.installed
	$(RUN) benchmarks/loader.py

clean:
	rm -rf $(VENV) runs data/synth
