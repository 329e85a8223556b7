"""FiLM both ways with OpenVLA-OFT: its vision_backbone--N_checkpoint.pt into our FiLM towers,
and ours written in that layout, checked against the structure OFT's code builds."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from trainer.model import ModelConfig, build_policy
from trainer.model.bases import build_base
from trainer.model.film import film_parameters
from trainer.model.oft_film import film_maps, oft_vision_state

RANK = 4


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
    return build_policy(config, "cpu")


def test_our_film_towers_write_exactly_the_keys_and_shapes_ofts_wrapper_saves(film_policy):
    theirs = {
        _layerscale_published(k): tuple(v.shape) for k, v in _ofts_structure().state_dict().items()
    }
    ours = oft_vision_state(film_policy.vla.get_base_model(), RANK)
    assert {k: tuple(v.shape) for k, v in ours.items()} == theirs
    assert any(".blocks.0.block.attn.qkv.lora_A.default.weight" in k for k in ours)
    assert any(k.endswith("patch_embed.proj.base_layer.weight") for k in ours)


def test_an_ofts_film_file_loads_into_our_towers_and_ours_back(film_policy):
    oft = _ofts_structure()
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in oft.named_parameters():
            if ".scale." in name or ".shift." in name:
                param.normal_()
    saved = {_layerscale_published(k): v for k, v in oft.state_dict().items()}
    maps = film_maps(saved)
    params = film_parameters(film_policy.vla.get_base_model())
    assert set(maps) == set(params)  # the FiLM maps keep their names: 2 towers x blocks x 4
    assert len(maps) == 4 * (3 + 3)
