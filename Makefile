# Two commands do all the set-up on a fresh machine:
#   make demo   - virtual environment, install, sample data, then the main job on a default
#   make test   - the same set-up, then the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS ?= cpu,test
DEMO_OUT ?= demo-out
DEMO_STEPS ?= 1500

.PHONY: demo test install data benchmarks clean

$(STAMP): setup.cfg setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(BIN)/cryoem-denoise fetch

demo: data
	$(BIN)/cryoem-denoise info $$($(BIN)/cryoem-denoise fetch epu2.9_example.mrc fei-extended.mrc)
	$(BIN)/cryoem-denoise fit --tiny --intensity percentile --steps $(DEMO_STEPS) \
		--out $(DEMO_OUT)/model --overwrite
	$(BIN)/cryoem-denoise apply --model $(DEMO_OUT)/model --out $(DEMO_OUT)/denoised --png \
		--overwrite $$($(BIN)/cryoem-denoise fetch epu2.9_example.mrc)
	@echo "demo: figure in $(DEMO_OUT)/denoised/epu2.9_example_compare.png"

test: data
	$(BIN)/python -m pytest -q

benchmarks: data
	cd benchmarks && ../$(BIN)/python bench_training.py && ../$(BIN)/python bench_apply.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info .pytest_cache
