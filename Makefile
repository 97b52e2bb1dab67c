# Anabranch: the two commands are `make demo` and `make test` (as root, on Debian 12).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
LAB   := $(PY) tests/lab/lab.py

.PHONY: setup test test-fast bench demo lab-up lab-down clean-kernel-state clean

setup:
	bash tests/setup.sh

# Every test tier; under CI=true a skipped root/BPF/browser test fails the run.
test: setup
	$(PY) -m pytest -p no:cacheprovider tests

# Unit tests only (no root, no lab, no browser).
test-fast: setup
	$(PY) -m pytest -p no:cacheprovider -m "not root and not lab and not browser" tests

# Benchmarks write build/bench/*.json and print a table.
bench: setup
	$(PY) tests/bench/run.py

demo: setup
	$(PY) tests/lab/demo.py

lab-up: setup
	$(LAB) up

lab-down:
	$(LAB) down

# Remove whatever a hard-killed daemon or test left in the kernel.
clean-kernel-state:
	-$(LAB) down --all

clean:
	rm -rf build
