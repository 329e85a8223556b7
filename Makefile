# Set-up and checks. `make demo` and `make test` work from a fresh clone: they build .venv first.
VENV := .venv
PY := $(VENV)/bin/python
# torch and torchvision are pinned to the releases the suite is tested with, so a fresh
# .venv gets the same ones (and a resolver cannot swap in a different build). We import no
# torchvision, but timm requires it and imports it at start-up, and its compiled ops must be
# the build made for this torch.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
DEMO := .demo

.PHONY: demo test lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[train,s3,lerobot,serve,dev]' $(TORCH_PINS)
	touch $@

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

demo: venv
	rm -rf $(DEMO)
	$(VENV)/bin/vla-data generate $(DEMO)/episodes --layout processed --episodes 6 --steps 40
	$(VENV)/bin/vla-data convert $(DEMO)/episodes $(DEMO)/shards --val-episodes 1 --shard-samples 50
	$(VENV)/bin/vla-data stats $(DEMO)/shards
	$(VENV)/bin/vla-train --shards $(DEMO)/shards --run-dir $(DEMO)/run --base tiny \
		--max-steps 20 --batch-size 4 --val-every 10 --save-every 20
	@echo "metrics: $(DEMO)/run/metrics.jsonl, checkpoint: $(DEMO)/run/step-20/"

clean:
	rm -rf $(VENV) $(DEMO)
