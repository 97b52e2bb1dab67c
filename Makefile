# Anabranch: the two commands are `make demo` and `make test` (as root, on Debian 12).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
LAB   := $(PY) tests/lab/lab.py

.PHONY: setup test test-fast test-deb deb bench soak demo lab-up lab-down clean-kernel-state clean test-train model

setup:
	bash tests/setup.sh

# Every test tier; under CI=true a skipped root/BPF/browser test fails the run.
# This includes building, installing and purging the .deb (tests/packaging).
test: setup
	$(PY) -m pytest -p no:cacheprovider -m "not train" tests

# Build the .deb into build/deb/ (from a copy of the working tree).
deb:
	bash tests/packaging/build_deb.sh

# Build the .deb, install it here, run it in the lab, purge it (as root).
test-deb: setup
	$(PY) -m pytest -p no:cacheprovider tests/packaging

# Unit tests only (no root, no lab, no browser).
test-fast: setup
	$(PY) -m pytest -p no:cacheprovider -m "not root and not lab and not browser and not train" tests

# The training code's own tests need torch (the `train` extra, CPU only, large):
# never a runtime or `make test` dependency.
test-train: setup
	$(PY) -m pip install -q -e ".[train]"
	$(PY) -m pytest -p no:cacheprovider -m train tests

# Retrain the committed predictor from its recipes (controller/predict/recipes/):
# five teachers, a first model distilled from them, then the shipped model
# distilled from that one and four of the teachers, each into build/predict/
# (15 min to 2 h each on one core, about 4.5 h in all). Copy
# build/predict/distilled/model.* into controller/predict/ to ship the result.
RECIPES  := controller/predict/recipes
TEACHERS := $(patsubst $(RECIPES)/teacher-%.json,%,$(wildcard $(RECIPES)/teacher-*.json))
model: setup
	$(PY) -m pip install -q -e ".[train]"
	for t in $(TEACHERS); do \
	  $(PY) -m anabranch.controller.predict train --traces ../shared/data/traces \
	    --recipe $(RECIPES)/teacher-$$t.json --out build/predict/teacher-$$t || exit 1; \
	done
	for d in distilled-first distilled; do \
	  $(PY) -m anabranch.controller.predict train --traces ../shared/data/traces \
	    --recipe $(RECIPES)/$$d.json --out build/predict/$$d || exit 1; \
	done

# Benchmarks write build/bench/*.json and print a table.
bench: setup
	$(PY) tests/bench/run.py

# The long reliability run (as root): SOAK_MINUTES (default 10) of traffic, faults and
# fuzzing with the web UI open; figures in build/bench/reliability.json.
soak: setup
	$(PY) tests/bench/soak.py --minutes $${SOAK_MINUTES:-10}

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
