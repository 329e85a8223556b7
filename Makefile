# Set-up and checks. `make demo` and `make test` work from a fresh clone: they build .venv first.
VENV := .venv
PY := $(VENV)/bin/python
# torch and torchvision are pinned to the releases the suite is tested with, so a fresh
# .venv gets the same ones (and a resolver cannot swap in a different build). We import no
# torchvision, but timm requires it and imports it at start-up, and its compiled ops must be
# the build made for this torch.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
DEMO := .demo
SIM_DEMO := .eval-demo
# Headless OpenGL for the simulator's cameras (MuJoCo through EGL). Installed when missing
# and make runs as root (a fresh CI machine); otherwise named so a user can install them.
SIM_DEBS := libegl1 libgl1-mesa-dri

# OpenVLA-OFT's own pins of peft and transformers, in a venv of their own that borrows our
# torch through a .pth file (its own packages come first): the test that OFT's peft loads
# and merges our exported adapter runs against them.
PEFT_011 := .venv-peft011
PEFT_011_PINS := peft==0.11.1 transformers==4.40.1 tokenizers==0.19.1 'huggingface_hub<0.24'

# MosaicML Streaming and litdata for bench/peers.py, likewise in a venv of their own that
# borrows our packages: their declared pins (numpy<2.2, huggingface_hub<1.0) would move ours,
# so they go in without their dependency pins, with the few modules they import that we lack.
PEERS := .venv-peers
PEERS_PINS := mosaicml-streaming==0.13.0 litdata==0.2.76 brotli==1.2.1 python-snappy==0.7.3 \
	cramjam==2.14.0 zstd==1.5.7.2 catalogue==2.0.10 lightning-utilities==0.15.3

.PHONY: demo eval-demo test lint venv clean bench-peers

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	dpkg -s $(SIM_DEBS) >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -q && \
		apt-get install -y -q $(SIM_DEBS); } || echo "warning: install $(SIM_DEBS) to render the simulator"
	$(PY) -m pip install -q -e '.[train,s3,lerobot,serve,rlds,sim,wandb,tensorboard,dev]' $(TORCH_PINS)
	touch $@

# Each side venv: its pins with --no-deps, our packages through a .pth file.
$(PEFT_011)/.installed: SIDE_PINS = $(PEFT_011_PINS)
$(PEERS)/.installed: SIDE_PINS = $(PEERS_PINS)
$(PEFT_011)/.installed $(PEERS)/.installed: %/.installed: $(VENV)/.installed
	test -x $*/bin/python || python3 -m venv $*
	$(PY) -c 'import site; print(site.getsitepackages()[0])' > \
		"$$($*/bin/python -c 'import site; print(site.getsitepackages()[0])')/vla-shards-torch.pth"
	$*/bin/python -m pip install -q --no-deps $(SIDE_PINS)
	touch $@

test: venv $(PEFT_011)/.installed $(PEERS)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PEFT_011_PYTHON=$(CURDIR)/$(PEFT_011)/bin/python PEERS_PYTHON=$(CURDIR)/$(PEERS)/bin/python \
		$(VENV)/bin/pytest

# Our loader beside MosaicML Streaming and litdata on the same samples (docs/BENCHMARKS.md).
bench-peers: $(PEERS)/.installed
	$(PEERS)/bin/python -m bench.peers

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

# The whole closed loop on CPU: scripted demonstrations in the simulator -> shards -> a tiny
# model -> its success rate in the same simulator (a tiny CPU model is not expected to succeed).
eval-demo: venv
	rm -rf $(SIM_DEMO)
	$(VENV)/bin/vla-data generate $(SIM_DEMO)/episodes --env aloha-transfer-cube --episodes 4
	$(VENV)/bin/vla-data convert $(SIM_DEMO)/episodes $(SIM_DEMO)/shards --cameras top:head \
		--instruction "transfer the cube" --val-episodes 1 --shard-samples 200
	$(VENV)/bin/vla-train --shards $(SIM_DEMO)/shards --run-dir $(SIM_DEMO)/run --base tiny \
		--max-steps 40 --batch-size 4 --val-every 20 --save-every 40
	$(VENV)/bin/vla-train eval $(SIM_DEMO)/run/step-40 --env aloha-transfer-cube --episodes 3 \
		--max-steps 300 --videos 1 --out $(SIM_DEMO)/eval
	@echo "results: $(SIM_DEMO)/eval/eval_info.json, video: $(SIM_DEMO)/eval/videos/"

clean:
	rm -rf $(VENV) $(PEFT_011) $(PEERS) $(DEMO) $(SIM_DEMO)
