# SAR LULC: every target bootstraps what it needs (QGIS from Debian when root, the venv, pip).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.bootstrapped
export QT_QPA_PLATFORM ?= offscreen
ARGS    ?=

.PHONY: test demo deploy package example-models bench bench-tiles bench-fieldwork bench-train simulate remap pretrain train export train-bundled clean

$(STAMP): requirements-dev.txt tools/bootstrap.sh
	bash tools/bootstrap.sh

# ARGS selects: make test ARGS="tests/test_sar_input.py -k auto" (none: pytest.ini's testpaths, all tests)
test: $(STAMP)
	$(PY) -m pytest $(ARGS)

demo: $(STAMP)
	bash tools/demo.sh

deploy: $(STAMP)
	bash tools/deploy.sh

package: $(STAMP)
	$(PY) tools/package.py

example-models: $(STAMP)
	$(PY) tools/example_models.py

bench: $(STAMP)
	$(PY) tools/bench.py $(ARGS)

bench-tiles: $(STAMP)
	$(PY) tools/bench_tiles.py $(ARGS)

bench-fieldwork: $(STAMP)
	$(PY) tools/bench_fieldwork.py $(ARGS)

bench-train: $(STAMP)
	$(PY) tools/bench_train.py $(ARGS)

simulate: $(STAMP)
	$(PY) -m sarlulc.simulate $(ARGS)

remap: $(STAMP)
	$(PY) -m sarlulc.training.remap $(ARGS)

pretrain: $(STAMP)
	$(PY) -m sarlulc.training.pretrain $(ARGS)

train: $(STAMP)
	$(PY) -m sarlulc.training.train $(ARGS)

export: $(STAMP)
	$(PY) -m sarlulc.training.export $(ARGS)

train-bundled: $(STAMP)
	bash tools/train_bundled.sh

clean:
	rm -rf build dist demo_output bench_output .pytest_cache
