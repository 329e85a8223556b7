"""FiLM both ways with OpenVLA-OFT: its vision_backbone--N_checkpoint.pt into our FiLM towers,
and ours written in that layout, checked against the structure OFT's code builds."""

from __future__ import annotations

import copy

import pytest
import torch
from oft_fixtures import RANK, platform_step_dir
from peft import LoraConfig, get_peft_model
from torch import nn

from trainer.inference.export import ExportConfig, export
from trainer.inference.policy import Policy
from trainer.model import ModelConfig, ModelLoadError, build_model
from trainer.model.bases import build_base
from trainer.model.film import film_parameters
from trainer.model.oft_files import OftOptions
from trainer.model.oft_film import oft_vision_state


class FiLMedBlock(nn.Module):
    """OFT's FiLMedVisionTransformerBlock, as far as its state dict goes: block, scale, shift."""

    def __init__(self, block: nn.Module, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.block = block
        self.scale = nn.Linear(llm_dim, vision_dim)
        self.shift = nn.Linear(llm_dim, vision_dim)


class FiLMedBackbone(nn.Module):
    """OFT's FiLMedPrismaticVisionBackbone: wraps the (LoRA-injected) backbone's towers."""

    def __init__(self, vision_backbone: nn.Module, llm_dim: int) -> None:
        super().__init__()
        self.vision_backbone = vision_backbone
        for vit in (vision_backbone.featurizer, vision_backbone.fused_featurizer):
            wrapped = [FiLMedBlock(b, vit.num_features, llm_dim) for b in vit.blocks]
            vit.blocks = nn.Sequential(*wrapped)


def _ofts_structure() -> FiLMedBackbone:
    """What OFT's finetune.py builds for --use_film: get_peft_model with "all-linear" (every
    Linear's last name part as a target, so patch_embed.proj too), then the FiLM wrapper."""
    base, _ = build_base("tiny", "cpu", torch.float32)
    base = copy.deepcopy(base)
    targets = {n.rsplit(".", 1)[-1] for n, m in base.named_modules() if isinstance(m, nn.Linear)}
    config = LoraConfig(r=RANK, lora_alpha=RANK, target_modules=sorted(targets),
                        init_lora_weights="gaussian")  # fmt: skip
    peft_model = get_peft_model(base, config)
    return FiLMedBackbone(peft_model.base_model.model.vision_backbone, base.hidden_size)


def _layerscale_published(key: str) -> str:
    # openvla-7b's code renames timm's LayerScale gamma to scale_factor
    return key.replace(".ls1.gamma", ".ls1.scale_factor").replace(".ls2.gamma", ".ls2.scale_factor")


@pytest.fixture(scope="module")
def film_policy():
    config = ModelConfig(base="tiny", action_dim=7, chunk=8, lora_rank=RANK, film=True)
    return build_model(config, "cpu")


def test_our_film_towers_write_exactly_the_keys_and_shapes_ofts_wrapper_saves(film_policy):
    theirs = {
        _layerscale_published(k): tuple(v.shape) for k, v in _ofts_structure().state_dict().items()
    }
    ours = oft_vision_state(film_policy.vla.get_base_model(), RANK)
    assert {k: tuple(v.shape) for k, v in ours.items()} == theirs
    assert any(".blocks.0.block.attn.qkv.lora_A.default.weight" in k for k in ours)
    assert any(k.endswith("patch_embed.proj.base_layer.weight") for k in ours)


def test_an_ofts_film_file_loads_into_our_towers_and_ours_back(tmp_path):
    """A vision_backbone file laid out by OFT's wrapper, its FiLM maps drawn at random, in an
    OFT folder: a Policy loads exactly those maps; exporting the policy writes them back."""
    step_dir = platform_step_dir(tmp_path, chunk=25, action_dim=14, film=True,
                                 normalization="bounds", robot="aloha")  # fmt: skip
    folder = export(ExportConfig(step_dir, tmp_path / "oft"))
    oft = _ofts_structure()
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in oft.named_parameters():
            if ".scale." in name or ".shift." in name:
                param.normal_()
    saved = {_layerscale_published(k): v for k, v in oft.state_dict().items()}
    torch.save(saved, folder / "vision_backbone--3_checkpoint.pt")
    policy = Policy.load(folder, base="tiny", device="cpu", oft=OftOptions(("head", "left_wrist")))
    params = film_parameters(policy.net.vla.get_base_model())
    assert len(params) == 4 * (3 + 3)  # scale and shift, weight and bias, 2 towers x 3 blocks
    for name, param in params.items():
        assert torch.equal(param, saved[name]), name
    # Written back in the same layout: our vision file for this policy holds OFT's maps.
    back = oft_vision_state(policy.net.vla.get_base_model(), RANK)
    assert set(back) == set(saved)
    for name in params:
        assert torch.equal(back[name], saved[name])
    # A FiLM file whose maps do not fit (another base) is refused, naming the file.
    saved[next(iter(params))] = torch.zeros(3, 3)
    torch.save(saved, folder / "vision_backbone--3_checkpoint.pt")
    with pytest.raises(ModelLoadError, match="vision_backbone--3_checkpoint.pt.*shape mismatch"):
        Policy.load(folder, base="tiny", device="cpu", oft=OftOptions(("head", "left_wrist")))
