"""The slim 7B (openvla-7b's widths, 2 Llama layers) through the whole product path: vla-train,
an exact resume, predict, serve, export to OFT and back, a sharded bf16 base folder.

Training runs under --precision bf16, as OFT trains on a GPU: a bf16 base, bf16 autocast,
float32 LoRA and head (on a CPU without bf16 instructions its products run on float32
kernels, trainer/run/bf16_units.py: a step costs about 1.6x an fp32 one at these widths, not
minutes). Loading openvla-7b's sharded bf16 layout is covered too. bench/slim7b.py measures
the bf16-autocast activations the GPU plan uses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import json_numpy
import numpy as np
import pytest
import requests
import torch
from click.testing import CliRunner
from shard_fixtures import write_toy_shards

from trainer.cli import main
from trainer.model import ModelConfig, build_model
from trainer.model.model_files import read_tensors
from trainer.model.oft_files import read_oft
from trainer.model.weights import INDEX_FILE, read_state_dict, to_published_name, write_state_dict
from trainer.run.metrics import read_metrics

pytestmark = pytest.mark.slow
# OFT's LIBERO shape (chunk 8, 7 dims, bounds_q99, the gripper left raw), so export --to oft
# takes the run; one camera: 256 patches fewer per step than two, and nothing at these widths
# depends on it.
CHUNK, ACTION_DIM, CAMERAS = 8, 7, "head"
ASSET = Path(__file__).parent / "assets" / "openvla_7b_weights.json"
START_WAIT_S = 600  # a bound on waiting for the server to build the model, not a timing check


def _slim_names(shapes: dict) -> dict:
    """openvla-7b's tensors that a model of 2 Llama layers and 2 blocks per tower keeps."""
    kept = {}
    for name, shape in shapes.items():
        parts = name.split(".")
        for marker in ("layers", "blocks"):
            if marker in parts and int(parts[parts.index(marker) + 1]) >= 2:
                break
        else:
            kept[name] = tuple(shape)
    return kept


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two steps of the slim 7B at batch 1 through vla-train, a checkpoint after each."""
    root = tmp_path_factory.mktemp("slim7b")
    shards = write_toy_shards(
        root / "shards",
        train_episodes=2,
        steps=16,
        chunk=CHUNK,
        action_dim=ACTION_DIM,
        no_normalize=(ACTION_DIM - 1,),
    )
    args = ["--shards", str(shards), "--base", "openvla-7b-slim", "--device", "cpu"]
    args += ["--precision", "bf16"]
    args += ["--workers", "0", "--decode-threads", "0", "--batch-size", "1"]
    args += ["--cameras", CAMERAS, "--max-steps", "2", "--save-every", "1", "--keep", "2"]
    result = CliRunner().invoke(main, [*args, "--run-dir", str(root / "run")])
    assert result.exit_code == 0, result.output
    yield root, shards, args
    # A checkpoint here is about 1.9 GB and the merged export 3 GB: pytest would keep them
    # (and those of its last runs) on a disk the rest of the suite and the next runs share.
    shutil.rmtree(root)


def _link_big_files(src: str, dst: str) -> None:
    """copytree's copy: hard links for the checkpoint's large files (the resume only reads
    them), real copies for the small ones it rewrites (metrics, lock)."""
    if os.path.getsize(src) > 2**20:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def test_trains_and_resumes_loss_for_loss(run):
    root, _, args = run
    step = root / "run" / "step-2"
    config = json.loads((step / "model_config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["action_dim"] == ACTION_DIM
    head = read_tensors(step / "action_head.safetensors")
    assert sum(t.numel() for t in head.values()) == 151_117_831  # OFT's head for 7 dims
    adapter = read_tensors(step / "adapter_model.safetensors")
    assert all(t.dtype == torch.float32 for t in adapter.values())
    assert any(".layers.1.mlp.down_proj.lora_A" in k for k in adapter)
    # Resume from step 1 in a copy: step 2 must come out exactly as before.
    ignore = shutil.ignore_patterns("step-2")
    shutil.copytree(root / "run", root / "again", ignore=ignore, copy_function=_link_big_files)
    metrics = root / "again" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines(keepends=True)[0])
    result = CliRunner().invoke(main, ["--resume", str(root / "again"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    first, again = read_metrics(root / "run"), read_metrics(root / "again")
    assert [r["loss"] for r in first] == [r["loss"] for r in again]
    for done in (root / "again", root / "run" / "step-1"):  # what the later tests don't read
        shutil.rmtree(done)


def test_predict_serve_and_export_to_oft_and_back(run):
    root, shards, _ = run
    step = root / "run" / "step-2"
    args = ["predict", str(step), "--shards", str(shards), "-n", "1", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "mean L1" in result.output, result.output
    out = root / "oft"
    result = CliRunner().invoke(main, ["export", str(step), str(out), "--to", "oft"])
    assert result.exit_code == 0, result.output
    back = read_oft(out)
    for ours, theirs in (
        (read_tensors(step / "adapter_model.safetensors"), back.adapter),
        (read_tensors(step / "action_head.safetensors"), back.head),
    ):
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(theirs[k], t) for k, t in ours.items())
    assert back.lora_rank == 32 and back.action_dim == ACTION_DIM
    _serves(step, root / "server.log")


def _serves(step: Path, log: Path) -> None:
    command = [sys.executable, "-m", "trainer.cli", "serve", str(step), "--port", "0"]
    with open(log, "wb") as out:
        process = subprocess.Popen([*command, "--device", "cpu"], stdout=out, stderr=out)
    try:
        deadline, url = time.monotonic() + START_WAIT_S, None
        while url is None and time.monotonic() < deadline and process.poll() is None:
            lines = [x for x in log.read_text().splitlines() if x.startswith("serving ")]
            url = lines[0].split(" on ")[1].split()[0] if lines else None
            time.sleep(0.5)
        assert url, log.read_text()
        rng = np.random.default_rng(0)
        body = {
            "full_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
            "instruction": "lift the cube",
        }
        answer = requests.post(url, data=json_numpy.dumps(body), timeout=300)
        actions = np.stack(json_numpy.loads(answer.text))
        assert actions.shape == (CHUNK, ACTION_DIM) and np.isfinite(actions).all()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0, log.read_text()


def test_loads_a_sharded_base_laid_out_as_openvla_7b(run):
    root, _, _ = run
    merged = root / "oft"  # export --to oft wrote the merged slim base beside the adapter
    if not (merged / "model.safetensors").is_file():
        pytest.skip("needs the OFT export of the test before")
    # openvla-7b ships its base in bf16: so does this copy, and the model loads it as bf16.
    state = {k: v.to(torch.bfloat16) for k, v in read_state_dict(merged).items()}
    (merged / "model.safetensors").unlink()  # read: its 3 GB are not needed on disk again
    expected = _slim_names(json.loads(ASSET.read_text())["shapes"])
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    sharded = root / "sharded"
    sharded.mkdir()
    files = write_state_dict(state, sharded, shard_bytes=512 * 1024**2)
    assert len(files) > 2 and (sharded / INDEX_FILE).is_file()
    for extra in merged.iterdir():
        if extra.is_file() and (extra.name == "config.json" or "token" in extra.name):
            shutil.copy2(extra, sharded / extra.name)
    config = ModelConfig(base=str(sharded), action_dim=ACTION_DIM, chunk=CHUNK, dtype="bfloat16")
    model = build_model(config)
    base = {to_published_name(k): v for k, v in model.vla.get_base_model().state_dict().items()}
    for key in ("language_model.model.layers.1.mlp.down_proj.weight", "projector.fc1.weight"):
        name = next(k for k in base if k.startswith(key.rsplit(".", 1)[0]) and "base_layer" in k)
        assert torch.equal(base[name], state[key]), key
