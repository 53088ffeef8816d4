# The two README commands: `make demo` (set up, run the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-fast eval bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/no-deps.txt scripts/setup.sh
	bash scripts/setup.sh

demo: setup  ## embed the example media of every modality with their captions, offline
	$(PY) -m omnibind info
	$(PY) -m omnibind demo

test: setup  ## the whole suite, slow real-data checks included
	$(PY) -m pytest -q -ra

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

eval: setup  ## real-data report of the README table (docs/results/eval/), the table itself rewritten
	$(VENV)/bin/omnibind eval --space default --space bridge --space multilingual --space fast --task all --out docs/results/eval --readme README.md

bench: setup
	$(PY) benchmarks/embed_throughput.py

clean:
	rm -rf $(VENV) examples/media .pytest_cache
