# The two set-up commands of the README: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo-out

.PHONY: demo test bench examples clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: pip takes the local CPU wheel instead of downloading a multi-GB CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,es,opensearch,eval]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/p4r personas generate --items examples/items.jsonl --reviews examples/reviews.jsonl -o $(OUT)/personas.jsonl
	$(BIN)/p4r index build --personas $(OUT)/personas.jsonl --items examples/items.jsonl --index $(OUT)/index
	$(BIN)/p4r recommend --index $(OUT)/index --interactions examples/interactions.jsonl --user demo-petite-dresses -k 5
	$(BIN)/p4r recommend --index $(OUT)/index --interactions examples/interactions.jsonl --user demo-casual-denim -k 5
	$(BIN)/p4r recommend --index $(OUT)/index --interactions examples/interactions.jsonl --user demo-casual-denim -k 3 \
		--query "soft stretch" --filter categories=Jeans

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_recommend.py

examples: $(VENV)/.installed
	$(BIN)/python scripts/build_examples.py

clean:
	rm -rf $(OUT) .pytest_cache
