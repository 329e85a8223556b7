"""Export to OpenVLA-OFT and back, for each platform: the folder in OFT's exact layout, read
back bit for bit; a run OFT would decode differently refused in one line; merged-only
folders; and a policy from an OFT folder fed OFT's own pixels."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import simplejpeg
import torch
from click.testing import CliRunner
from oft_fixtures import frames, platform_step_dir, reference_crop
from PIL import Image
from shard_fixtures import write_toy_shards

from trainer.cli import main
from trainer.inference.export import ExportConfig, export
from trainer.inference.policy import Policy
from trainer.model import build_model, normalize_images
from trainer.model.adapter_config import PEFT_011_LORA_FIELDS
from trainer.model.oft_files import OftOptions
from trainer.run.builder import init_weights, model_base
from trainer.run.loop import train
from trainer.run.train_config import TrainConfig

CAMERAS = ("head", "left_wrist")
THREE = (*CAMERAS, "right_wrist")
PLATFORM_RUNS = {
    "libero": dict(chunk=8, action_dim=7, proprio_dim=8, robot="libero"),
    "aloha": dict(chunk=25, action_dim=14, normalization="bounds", robot="aloha"),
    "aloha+film+proprio": dict(
        chunk=25,
        action_dim=14,
        proprio_dim=14,
        film=True,
        cameras=THREE,
        normalization="bounds",
        robot="aloha",
    ),  # fmt: skip
}


def _load(step_dir):
    return torch.load(step_dir, weights_only=True)


@pytest.mark.parametrize("name", sorted(PLATFORM_RUNS))
def test_each_platform_goes_to_ofts_layout_and_back_bit_for_bit(tmp_path, name):
    options = PLATFORM_RUNS[name]
    step_dir = platform_step_dir(tmp_path, **options)
    out = tmp_path / "oft"
    result = CliRunner().invoke(main, ["export", str(step_dir), str(out)])
    assert result.exit_code == 0, result.output
    robot = options["robot"]
    assert f"OpenVLA-OFT platform {robot}: " in result.output
    assert json.loads((out / "oft_platform.json").read_text())["platform"] == robot
    # OFT's files, named as its finetune.py names them.
    files = {p.name for p in out.iterdir()}
    assert {"lora_adapter", "action_head--3_checkpoint.pt", "dataset_statistics.json",
            "model.safetensors", "config.json"} <= files  # fmt: skip
    assert ("proprio_projector--3_checkpoint.pt" in files) == bool(options.get("proprio_dim"))
    assert ("vision_backbone--3_checkpoint.pt" in files) == bool(options.get("film"))
    adapter_config = json.loads((out / "lora_adapter" / "adapter_config.json").read_text())
    assert set(adapter_config) <= PEFT_011_LORA_FIELDS and adapter_config["r"] == 4
    head = _load(out / "action_head--3_checkpoint.pt")
    assert all(k.startswith("module.model.") for k in head)
    if options.get("film"):
        vision = _load(out / "vision_backbone--3_checkpoint.pt")
        assert all(k.startswith("vision_backbone.") for k in vision)
        assert any(".blocks.0.block.attn.qkv.base_layer.weight" in k for k in vision)
    # Read back as an OFT folder: the platform from oft_platform.json, the same network.
    cameras = options.get("cameras", CAMERAS)
    ours = Policy.load(step_dir, device="cpu")
    theirs = Policy.load(out, base="tiny", device="cpu", oft=OftOptions(cameras=cameras))
    assert theirs.net.config == ours.net.config
    assert (theirs.run.normalization, theirs.run.robot) == (ours.run.normalization, robot)
    mine = ours.net.state_dict()
    for key, tensor in theirs.net.state_dict().items():
        assert torch.equal(tensor, mine[key]), key


def test_a_run_oft_would_decode_differently_is_refused_in_one_line(tmp_path):
    step_dir = platform_step_dir(tmp_path, chunk=8, action_dim=7, robot="libero",
                                 normalization="bounds")  # fmt: skip
    result = CliRunner().invoke(main, ["export", str(step_dir), str(tmp_path / "out")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "OpenVLA-OFT would decode this libero run wrongly: normalization bounds " in (
        result.output
    )
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    odd = platform_step_dir(tmp_path / "odd", chunk=4, action_dim=3)
    result = CliRunner().invoke(main, ["export", str(odd), str(tmp_path / "out")])
    assert result.exit_code == 1 and "under every platform" in result.output
    assert "convert with --robot libero, aloha or bridge" in result.output
    # The merged export does not involve OFT's constants: allowed.
    export(ExportConfig(odd, tmp_path / "merged", to="merged"))


def test_a_run_whose_action_mask_is_not_the_platforms_is_refused_in_one_line(tmp_path):
    """A set converted without --robot or --no-normalize-dims normalizes LIBERO's gripper;
    OFT's LIBERO pipeline leaves it raw. ALOHA's normalizes every dimension."""
    step_dir = platform_step_dir(tmp_path, chunk=8, action_dim=7, no_normalize=())
    result = CliRunner().invoke(main, ["export", str(step_dir), str(tmp_path / "out")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output and str(step_dir) in result.output
    assert "unnormalized action dims: OpenVLA-OFT's libero 6, this run none" in result.output
    assert "convert with --no-normalize-dims 6 (or --robot libero)" in result.output
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    aloha = platform_step_dir(tmp_path / "aloha", chunk=25, action_dim=14, robot="aloha",
                              normalization="bounds", no_normalize=(6, 13))  # fmt: skip
    result = CliRunner().invoke(main, ["export", str(aloha), str(tmp_path / "out")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "OpenVLA-OFT's aloha none, this run 6,13" in result.output
    assert "convert without --no-normalize-dims (or with --robot aloha)" in result.output
    # The same runs with the platform's masks export (the default fixture's masks).
    export(ExportConfig(platform_step_dir(tmp_path / "ok", chunk=8, action_dim=7),
                        tmp_path / "ok_out"))  # fmt: skip


def test_merged_only_folders_predict_and_start_runs_with_fresh_lora(tmp_path):
    step_dir = platform_step_dir(tmp_path, chunk=8, action_dim=7, robot="libero")
    out = export(ExportConfig(step_dir, tmp_path / "oft"))
    for file in (out / "lora_adapter").iterdir():
        file.unlink()
    (out / "lora_adapter").rmdir()
    ours = Policy.load(step_dir, device="cpu")
    theirs = Policy.load(out, device="cpu", oft=OftOptions(cameras=CAMERAS))
    assert theirs.net.config.base == str(out)  # the merged weights are the base
    lora_b = [p for n, p in theirs.net.named_parameters() if "lora_B" in n]
    assert lora_b and all(not p.any() for p in lora_b)  # LoRA at its start: no change
    pixels = theirs.model_input(frames(2))
    tokens = ours.net.tokenize(["open the drawer"])
    with torch.no_grad():
        np.testing.assert_allclose(theirs.net(pixels, **tokens), ours.net(pixels, **tokens),
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
    with pytest.raises(Exception, match="merged-only.*leave out --base"):
        Policy.load(out, base="tiny", device="cpu", oft=OftOptions(cameras=CAMERAS))
    # --init-from: a run on the merged weights, its head loaded, LoRA starting afresh.
    shards = write_toy_shards(tmp_path / "shards", chunk=8, action_dim=7)
    cfg = TrainConfig(shards=str(shards), run_dir=tmp_path / "run", base="tiny", lora_rank=4,
                      device="cpu", workers=0, batch_size=2, max_steps=1, save_every=1,
                      cameras=CAMERAS, init_from=str(out))  # fmt: skip
    assert model_base(cfg) == str(out)
    train(cfg)
    saved = json.loads((cfg.run_dir / "step-1" / "model_config.json").read_text())
    assert saved["base"] == str(out)
    model = build_model(ours.net.config.__class__(**{**saved, "lora_rank": 4}), "cpu")
    init_weights(model, out, torch.device("cpu"))
    for key, tensor in ours.net.action_head.state_dict().items():
        assert torch.equal(model.action_head.state_dict()[key], tensor)


def test_a_policy_from_an_oft_folder_gets_ofts_pixels(tmp_path):
    step_dir = platform_step_dir(tmp_path, chunk=8, action_dim=7, robot="libero")
    out = export(ExportConfig(step_dir, tmp_path / "oft"))
    theirs = Policy.load(out, base="tiny", device="cpu", oft=OftOptions(cameras=CAMERAS))
    camera = frames(1, seed=4)[0, 0]
    big = np.asarray(Image.fromarray(camera).resize((320, 256)))
    # OFT's path, written out here: JPEG 95 (4:2:0) and Lanczos for a frame that is not 224,
    # then its centre crop in uint8 (reference_crop), then the processor's normalization.
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "JPEG", quality=95, subsampling="4:2:0")
    decoded = simplejpeg.decode_jpeg(buffer.getvalue(), fastdct=True, fastupsample=False)
    resized = np.asarray(Image.fromarray(decoded).resize((224, 224), Image.Resampling.LANCZOS))
    expected = [reference_crop(resized), reference_crop(camera)]
    pixels = theirs.model_input(theirs.stored_views([[big, camera]]))
    want = torch.from_numpy(np.stack(expected)[None]).permute(0, 1, 4, 2, 3)
    torch.testing.assert_close(pixels, normalize_images(want), rtol=0, atol=0)
    # Our own runs keep the path their training images took (docs/OFT.md).
    ours = Policy.load(step_dir, device="cpu")
    assert not ours.oft_frames and theirs.oft_frames
