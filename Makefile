# Two commands do all the set-up on a fresh machine:
#   make demo   - virtual environment, install, sample data, then the main job on a default
#   make test   - the same set-up, then the docs build and the whole test suite (CI)
# For developers: make test-fast (the tests not marked slow, a few minutes).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS ?= cpu,jax,test,docs,star
DEMO_OUT ?= demo-out
DEMO_STEPS ?= 300

.PHONY: demo test test-fast install data docs benchmarks fuzz peers clean

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
	$(BIN)/cryoem-denoise fit --tiny --steps $(DEMO_STEPS) --out $(DEMO_OUT)/tiny-model --overwrite
	$(BIN)/cryoem-denoise simulate $$($(BIN)/cryoem-denoise fetch mmcif_6zu5.cif) --n 4 --seed 1000 \
		--out $(DEMO_OUT)/simulated.mrcs --png --overwrite
	$(BIN)/cryoem-denoise apply $(DEMO_OUT)/simulated.mrcs --sigma 40 --png \
		--out $(DEMO_OUT)/sigma40 --overwrite
	$(BIN)/cryoem-denoise apply $$($(BIN)/cryoem-denoise fetch epu2.9_example.mrc) --png \
		--out $(DEMO_OUT)/micrograph --overwrite
	@echo "demo: figures in $(DEMO_OUT)/sigma40/simulated_compare.png and $(DEMO_OUT)/micrograph/epu2.9_example_compare.png"

# The documentation site (docs/, mkdocs.yml): results tables rendered from benchmarks/results/.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict -q -d build/docs

# The suite on TensorFlow, then the backend tests again on JAX with TensorFlow hidden (as if
# it were not installed: tests/hide_modules/sitecustomize.py).
test: data docs
	$(BIN)/python -m pytest -q --durations=15
	KERAS_BACKEND=jax CRYOEM_DENOISE_HIDE_MODULES=tensorflow PYTHONPATH=$(CURDIR)/tests/hide_modules \
		$(BIN)/python -m pytest -q -m backends --durations=10

# The tests not marked slow (pytest -m "not slow"): a quick check while working.
test-fast: data
	$(BIN)/python -m pytest -q -m "not slow" --durations=5

# The readers' fuzzer, long: 100,000 mutated MRC, TIFF and PNG files (make test runs a
# bounded part of it); writes benchmarks/results/fuzz_images.json.
fuzz: data
	$(BIN)/python benchmarks/bench_fuzz.py --examples 100000

BENCHMARKS ?= training apply simulate evaluate quality

benchmarks: data
	cd benchmarks && for b in $(BENCHMARKS); do ../$(BIN)/python bench_$$b.py || exit 1; done

# Benchmark peers, never dependencies of the package: Topaz-Denoise (topaz-em) in its own
# environment, for benchmarks/bench_real_micrographs.py (benchmarks/peers/topaz_denoise.py).
# torch 2.13.0 is the CPU build where pip finds it locally, else PyPI's (CUDA, several GB).
TOPAZ_VENV ?= .venv-topaz
TOPAZ_REQS := benchmarks/peers/requirements-topaz.txt

$(TOPAZ_VENV)/.installed: $(TOPAZ_REQS)
	test -x $(TOPAZ_VENV)/bin/python || $(PYTHON) -m venv $(TOPAZ_VENV)
	$(TOPAZ_VENV)/bin/python -m pip install --quiet -r $(TOPAZ_REQS)
	$(TOPAZ_VENV)/bin/python -m pip install --quiet --no-deps topaz-em==0.3.20
	$(TOPAZ_VENV)/bin/python -c "import topaz.denoise; print('topaz', topaz.__version__)"
	touch $@

peers: $(TOPAZ_VENV)/.installed

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info .pytest_cache
