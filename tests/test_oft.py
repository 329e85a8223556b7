"""OpenVLA-OFT interop: its checkpoint folder read (predict, Policy, --init-from) and written."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file
from shard_fixtures import write_toy_shards

from shards.format import JpegStorage
from trainer.cli import main
from trainer.inference.checkpoint_info import read_checkpoint
from trainer.inference.export import ExportConfig, export
from trainer.inference.policy import Policy
from trainer.inference.predict import PredictConfig, compare
from trainer.model import ModelConfig, ModelLoadError, build_model
from trainer.model.model_files import read_tensors
from trainer.model.oft_files import OftOptions, read_oft, write_oft
from trainer.run.builder import init_weights
from trainer.run.loop import train
from trainer.run.metrics import read_metrics
from trainer.run.train_config import TrainConfig

STEPS = 2
CAMERAS = ("head", "left_wrist")
# OFT's head as its finetune.py saves it from DDP (prismatic/models/action_heads.py,
# L1RegressionActionHead -> MLPResNet(num_blocks=2)).
OFT_HEAD_KEYS = [
    f"module.model.{name}.{p}"
    for name in (
        "layer_norm1",
        "fc1",
        "mlp_resnet_blocks.0.ffn.0",
        "mlp_resnet_blocks.0.ffn.1",
        "mlp_resnet_blocks.1.ffn.0",
        "mlp_resnet_blocks.1.ffn.1",
        "layer_norm2",
        "fc2",
    )  # fmt: skip
    for p in ("weight", "bias")
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run (image_aug on, so predictions take the centre crop; the default seed, which
    also picks the instructions predict reads an OFT folder with): (shards, step dir)."""
    root = tmp_path_factory.mktemp("oft")
    # LIBERO's shape and action mask (the gripper left raw), so --to oft exports it.
    shards = write_toy_shards(root / "shards", chunk=8, action_dim=7, no_normalize=(6,))
    cfg = TrainConfig(
        shards=str(shards), run_dir=root / "run", base="tiny", lora_rank=4, device="cpu",
        workers=0, batch_size=4, max_steps=STEPS, save_every=STEPS, cameras=CAMERAS,
    )  # fmt: skip
    train(cfg)
    return shards, cfg.run_dir / f"step-{STEPS}"


def _images(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in CAMERAS]


def _oft_options():
    return OftOptions(cameras=CAMERAS, chunk=8)


def _oft_folder_by_hand(step_dir, out, prefix):
    """An OFT folder built from the documented layout, not by our exporter."""
    (out / "lora_adapter").mkdir(parents=True)
    adapter = load_file(step_dir / "adapter_model.safetensors")
    # OFT's all-linear also adapts lm_head, which never runs: loaded without it, and said.
    adapter["base_model.model.language_model.lm_head.lora_A.weight"] = torch.zeros(4, 64)
    adapter["base_model.model.language_model.lm_head.lora_B.weight"] = torch.zeros(100, 4)
    save_file(adapter, out / "lora_adapter" / "adapter_model.safetensors")
    (out / "lora_adapter" / "adapter_config.json").write_text(json.dumps({"r": 4}))
    head = load_file(step_dir / "action_head.safetensors")
    saved = {key: head[key.removeprefix("module.")] for key in OFT_HEAD_KEYS}
    if not prefix:
        saved = {k.removeprefix("module."): v for k, v in saved.items()}
    torch.save(saved, out / "action_head--150000_checkpoint.pt")
    shutil.copy(step_dir / "stats.json", out / "dataset_statistics.json")
    return out


def test_our_head_keys_are_ofts(run):
    head = load_file(run[1] / "action_head.safetensors")
    assert sorted("module." + k for k in head) == sorted(OFT_HEAD_KEYS)


@pytest.mark.parametrize("prefix", [True, False])
def test_oft_folder_loads_strictly_and_predicts_our_chunk(run, tmp_path, prefix, caplog):
    _, step_dir = run
    oft_dir = _oft_folder_by_hand(step_dir, tmp_path / "run--150000_chkpt", prefix)
    ours = Policy.load(step_dir, device="cpu")
    with caplog.at_level(logging.WARNING):
        theirs = Policy.load(oft_dir, base="tiny", device="cpu", oft=_oft_options())
    assert "ignored 2 LoRA tensors of 1 modules" in caplog.text
    assert "language_model.lm_head" in caplog.text
    # The same pixels (an OFT folder's frames take OFT's own crop, in uint8: see
    # test_oft_export.py), so the chunks compare the networks and the denormalization.
    pixels = ours.model_input(np.stack(_images())[None])
    tokens = ours.net.tokenize(["lift the cup"])
    with torch.no_grad():
        chunks = [p.denormalize(p.net(pixels, **tokens).numpy()) for p in (theirs, ours)]
    np.testing.assert_array_equal(chunks[0], chunks[1])
    assert theirs.jpeg == JpegStorage(95, "420")
    # A head tensor short is refused, naming the file and the key.
    head_file = oft_dir / "action_head--150000_checkpoint.pt"
    head = torch.load(head_file, weights_only=True)
    del head[next(k for k in head if k.endswith("fc1.bias"))]
    torch.save(head, head_file)
    with pytest.raises(ModelLoadError, match=r"action_head--150000.*missing key.*model.fc1.bias"):
        Policy.load(oft_dir, base="tiny", device="cpu", oft=_oft_options())


def test_export_to_oft_round_trips_bit_exactly(run, tmp_path):
    _, step_dir = run
    out = tmp_path / "exported"
    result = CliRunner().invoke(main, ["export", str(step_dir), str(out), "--to", "oft"])
    assert result.exit_code == 0, result.output
    head = torch.load(out / f"action_head--{STEPS}_checkpoint.pt", weights_only=True)
    assert sorted(head) == sorted(OFT_HEAD_KEYS)
    assert (out / "dataset_statistics.json").read_text() == (step_dir / "stats.json").read_text()
    assert {"config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    back = read_oft(out)
    for ours, theirs in (
        (read_tensors(step_dir / "adapter_model.safetensors"), back.adapter),
        (read_tensors(step_dir / "action_head.safetensors"), back.head),
    ):
        assert ours.keys() == theirs.keys()
        for key, tensor in ours.items():
            assert theirs[key].dtype == tensor.dtype and torch.equal(theirs[key], tensor), key
    assert back.lora_rank == 4 and back.action_dim == 7
    # Export refuses to write over anything.
    again = CliRunner().invoke(main, ["export", str(step_dir), str(out)])
    assert again.exit_code == 1 and "not an empty folder" in again.output


def test_predict_cli_reads_an_oft_folder(run, tmp_path):
    shards, step_dir = run
    oft_dir = tmp_path / "oft"
    export(ExportConfig(step_dir, oft_dir, to="oft"))
    args = ["--shards", str(shards), "-n", "4", "--device", "cpu"]
    ours = CliRunner().invoke(main, ["predict", str(step_dir), *args])
    theirs = CliRunner().invoke(
        main, ["predict", str(oft_dir), *args, "--base", "tiny", "--cameras", "head,left_wrist"]
    )
    assert ours.exit_code == theirs.exit_code == 0, theirs.output
    assert ours.output.splitlines()[-2:] == theirs.output.splitlines()[-2:]
    assert "mean L1" in theirs.output
    wrong = CliRunner().invoke(main, ["predict", str(step_dir), *args, "--cameras", "head"])
    assert wrong.exit_code == 1 and "for OpenVLA-OFT folders" in wrong.output


def test_merged_export_is_the_adapted_model(run, tmp_path):
    _, step_dir = run
    merged = export(ExportConfig(step_dir, tmp_path / "merged", to="merged"))
    assert not (merged / "lora_adapter").exists()
    ours = Policy.load(step_dir, device="cpu")
    # The merged base with a fresh LoRA (lora_B starts at zero) and the trained head.
    net = build_model(ModelConfig(base=str(merged), action_dim=7, chunk=8, lora_rank=4))
    net.action_head.load_state_dict(load_file(step_dir / "action_head.safetensors"))
    on_merged = Policy(net, read_checkpoint(step_dir), "toy", torch.device("cpu"))
    stored = np.stack(_images(1))[None]
    np.testing.assert_allclose(
        on_merged.predict_stored(stored, ["grab the cup"]),
        ours.predict_stored(stored, ["grab the cup"]),
        rtol=1e-4,
        atol=1e-5,
    )


def test_init_from_an_oft_folder(run, tmp_path):
    shards, step_dir = run
    oft_dir = _oft_folder_by_hand(step_dir, tmp_path / "oft", prefix=True)
    policy = build_model(ModelConfig(base="tiny", action_dim=7, chunk=8, lora_rank=4))
    init_weights(policy, oft_dir, torch.device("cpu"))
    trained = Policy.load(step_dir, device="cpu").net.state_dict()
    for key, tensor in policy.state_dict().items():
        assert torch.equal(tensor, trained[key]), key
    # The whole run path: a fresh run starting from the OFT folder.
    cfg = TrainConfig(
        shards=str(shards), run_dir=tmp_path / "run", base="tiny", lora_rank=4, device="cpu",
        workers=0, batch_size=2, max_steps=1, save_every=1, cameras=CAMERAS,
        init_from=str(oft_dir),
    )  # fmt: skip
    train(cfg)
    assert (cfg.run_dir / "step-1" / "action_head.safetensors").is_file()
    # A missing folder is one line; the options are checked only when a run starts from it.
    args = ["--shards", str(shards), "--run-dir", str(tmp_path / "r2"), "--base", "tiny"]
    result = CliRunner().invoke(main, [*args, "--init-from", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no such checkpoint folder" in result.output


def test_oft_folders_we_cannot_run_are_refused(run, tmp_path):
    _, step_dir = run
    oft_dir = _oft_folder_by_hand(step_dir, tmp_path / "oft", prefix=True)
    with pytest.raises(ModelLoadError, match="does not record its cameras"):
        Policy.load(oft_dir, base="tiny", device="cpu")
    with pytest.raises(ModelLoadError, match="unknown robot 'franka'"):
        Policy.load(oft_dir, base="tiny", device="cpu", oft=OftOptions(CAMERAS, robot="franka"))
    torch.save({}, oft_dir / "proprio_projector--150000_checkpoint.pt")
    with pytest.raises(ModelLoadError, match="proprio_projector.*no fc1.weight"):
        read_oft(oft_dir)
    (oft_dir / "proprio_projector--150000_checkpoint.pt").unlink()
    torch.save({}, oft_dir / "vision_backbone--150000_checkpoint.pt")
    with pytest.raises(ModelLoadError, match="vision_backbone.*no vision_backbone.featurizer"):
        read_oft(oft_dir)
    (oft_dir / "vision_backbone--150000_checkpoint.pt").unlink()
    shutil.copy(
        oft_dir / "action_head--150000_checkpoint.pt", oft_dir / "action_head--5_checkpoint.pt"
    )
    result = CliRunner().invoke(
        main, ["predict", str(oft_dir), "--shards", str(run[0]), "--base", "tiny"]
    )
    assert result.exit_code == 1 and "2 action_head--*_checkpoint.pt files" in result.output


def test_predict_reads_a_drop_tail_run_as_its_validation_did(tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    cfg = TrainConfig(
        shards=str(shards), run_dir=tmp_path / "run", base="tiny", lora_rank=4, device="cpu",
        workers=0, batch_size=4, max_steps=1, val_every=1, cameras=CAMERAS, episode_tail="drop",
    )  # fmt: skip
    train(cfg)
    report = compare(PredictConfig(cfg.run_dir / "step-1", str(shards), samples=0, device="cpu"))
    (val,) = read_metrics(cfg.run_dir, "val")
    assert len(report.rows) == val["samples"] == 13  # 16 steps less the 3 padded chunks
    assert all(row.valid == 4 for row in report.rows)
    assert report.l1_normalized == pytest.approx(val["loss"], rel=1e-5)


def test_a_proprio_projector_goes_to_oft_and_back(run, tmp_path):
    """OFT's proprio_projector--N_checkpoint.pt (fc1, fc2; `module.` prefix) loads into our
    projector strictly, and the policy predicts from the state as the same network does."""
    _, step_dir = run
    oft_dir = _oft_folder_by_hand(step_dir, tmp_path / "oft", prefix=True)
    net = build_model(ModelConfig(base="tiny", action_dim=7, chunk=8, lora_rank=4, proprio_dim=5))
    projector = {"module." + k: v for k, v in net.proprio_projector.state_dict().items()}
    torch.save(projector, oft_dir / "proprio_projector--150000_checkpoint.pt")
    oft = read_oft(oft_dir)
    assert sorted(oft.proprio) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    stats = json.loads((oft_dir / "dataset_statistics.json").read_text())
    for entry in stats.values():  # OFT's statistics carry the state's too
        entry["proprio"] = {k: [0.0] * 5 for k in ("mean", "std", "min", "q01")}
        entry["proprio"].update({k: [1.0] * 5 for k in ("max", "q99")})
        entry["proprio"]["mask"] = [True] * 5
    (oft_dir / "dataset_statistics.json").write_text(json.dumps(stats))
    policy = Policy.load(oft_dir, base="tiny", device="cpu", oft=_oft_options())
    assert policy.net.config.proprio_dim == 5
    for name, tensor in net.proprio_projector.state_dict().items():
        assert torch.equal(policy.net.proprio_projector.state_dict()[name], tensor)
    stored = np.stack(_images())[None]
    low, high = np.zeros((1, 5), np.float32), np.ones((1, 5), np.float32)
    a, b = (policy.predict_stored(stored, ["lift the cup"], state) for state in (low, high))
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="trained with the robot state"):
        policy.predict_stored(stored, ["lift the cup"])
    # Written back as OFT writes it, beside the head.
    back = tmp_path / "back"
    write_oft(back, 7, oft.adapter, "{}", oft.head, "{}", proprio=oft.proprio)
    saved = torch.load(back / "proprio_projector--7_checkpoint.pt", weights_only=True)
    assert sorted(saved) == sorted(projector)
    assert all(torch.equal(saved[k], projector[k]) for k in projector)
