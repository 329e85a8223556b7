"""OpenVLA-OFT's `vision_backbone--N_checkpoint.pt` (FiLM runs), read into our names and written.

OFT wraps the LoRA-injected vision backbone in FiLMedPrismaticVisionBackbone and saves that
wrapper's whole state dict: every key starts `vision_backbone.` (the wrapped backbone), each
ViT block sits at `<tower>.blocks.N.block.*` beside its FiLM maps `<tower>.blocks.N.scale.*`
and `.shift.*`, and every layer peft adapted (its "all-linear": each Linear, and each tower's
patch_embed.proj Conv2d by its suffix) appears as `X.base_layer.*`, `X.lora_A.default.weight`
and `X.lora_B.default.weight`. OFT's evaluation loads the file strictly into the same
structure, so every one of those keys must be there. DINOv2's LayerScale is `ls1.scale_factor`,
as in openvla-7b (OpenVLA's code renames timm's `gamma`).

Our FiLM towers have the same structure (blocks.N.block, blocks.N.scale/shift) and our LoRA
the same names, less the adapter name: the two differ only where our LoRA leaves out the
layers that never run (each tower's last block, SigLIP's attn_pool), which OFT adapts.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .film import film_parameters
from .weights import check_state_dict, to_published_name

PREFIX = "vision_backbone."
ADAPTER_NAME = "default"  # peft's name for the one adapter OFT trains
_FILM_MAP = re.compile(r"vision_backbone\.\w+\.blocks\.\d+\.(scale|shift)\.(weight|bias)")
_LORA = re.compile(r"\.lora_([AB])\.weight$")


def is_film_map(key: str) -> bool:
    return _FILM_MAP.fullmatch(key) is not None


def oft_lora_key(ours: str) -> str:
    """`X.lora_A.weight` -> `X.lora_A.default.weight` (peft's in-module name)."""
    return _LORA.sub(rf".lora_\1.{ADAPTER_NAME}.weight", ours)


def our_lora_key(oft: str) -> str:
    return oft.replace(f".lora_A.{ADAPTER_NAME}.", ".lora_A.").replace(
        f".lora_B.{ADAPTER_NAME}.", ".lora_B."
    )


def to_oft_vision_state(
    state: dict[str, torch.Tensor], extra_lora: dict[str, tuple[int, ...]], rank: int
) -> dict[str, torch.Tensor]:
    """Our LoRA-injected FiLM backbone's state dict (keys `vision_backbone.*`, peft's in-module
    names, LayerScale already `scale_factor`) -> OFT's file.

    `extra_lora`: the layers OFT's all-linear adapts and ours does not, with their weight
    shape. They never run, so they get LoRA that changes nothing (A and B zero) under the
    base_layer names OFT's strict load expects.
    """
    out = {}
    for key, tensor in state.items():
        if not key.startswith(PREFIX):
            raise ValueError(f"{key}: not a vision backbone key")
        module, _, param = key.rpartition(".")
        if module in extra_lora:
            key = f"{module}.base_layer.{param}"
        out[key] = tensor
    for module, shape in extra_lora.items():
        if f"{module}.base_layer.weight" not in out:
            raise ValueError(f"{module}: no weight in the state dict")
        like = out[f"{module}.base_layer.weight"]
        a_shape = (rank, *shape[1:])  # Linear (r, in); Conv2d (r, in, kh, kw)
        b_shape = (shape[0], rank) + (1,) * (len(shape) - 2)
        out[f"{module}.lora_A.{ADAPTER_NAME}.weight"] = like.new_zeros(a_shape)
        out[f"{module}.lora_B.{ADAPTER_NAME}.weight"] = like.new_zeros(b_shape)
    return out


def film_maps(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The FiLM maps of OFT's file, keyed as our film_parameters names them (the same)."""
    return {k: v for k, v in state.items() if is_film_map(k)}


def tower_lora(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's LoRA tensors, keyed as our adapter file keys them."""
    return {"base_model.model." + our_lora_key(k): v for k, v in state.items() if ".lora_" in k}


def _linear_suffixes(model: nn.Module) -> set[str]:
    """The last name part of every Linear, as peft 0.11.1's "all-linear" collects them (before
    LoRA and FiLM were added: their own layers and the FiLM maps are left out)."""
    found = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and ".lora_" not in name and not is_film_layer(name):
            found.add(name.removesuffix(".base_layer").rsplit(".", 1)[-1])
    return found


def is_film_layer(name: str) -> bool:
    return is_film_map(f"{name}.weight")


def extra_oft_lora(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Vision-backbone layers OFT's all-linear adapts and our LoRA leaves out (they never run),
    by their OFT key prefix, with their weight shapes. `model`: our LoRA-injected base."""
    suffixes = _linear_suffixes(model)
    extra = {}
    for name, module in model.vision_backbone.named_modules():
        full = PREFIX + name
        if (
            isinstance(module, (nn.Linear, nn.Conv2d))
            and name.rsplit(".", 1)[-1] in suffixes
            and not name.endswith(".base_layer")
            and ".lora_" not in name
            and not is_film_layer(full)
        ):
            extra[full] = tuple(module.weight.shape)
    return extra


def oft_vision_state(model: nn.Module, rank: int) -> dict[str, torch.Tensor]:
    """OFT's vision_backbone--N_checkpoint.pt content for our LoRA-injected FiLM base."""
    state = {
        to_published_name(PREFIX + k): v.detach().cpu().contiguous()
        for k, v in model.vision_backbone.state_dict().items()
    }
    return to_oft_vision_state(state, extra_oft_lora(model), rank)


_FILM_BLOCK = re.compile(r"^(vision_backbone\.\w+\.blocks\.\d+)\.block\.")


def without_film(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FiLM model's published state dict as openvla-7b's layout has it: the FiLM maps left
    out (OFT keeps them in the vision_backbone file) and each block back at `blocks.N.*`."""
    return {_FILM_BLOCK.sub(r"\1.", k): v for k, v in state.items() if not is_film_map(k)}


def load_film_maps(base: nn.Module, state: dict[str, torch.Tensor], source, fix: str) -> None:
    """OFT's FiLM maps into our FiLM towers, strictly (every map, every shape)."""
    params = film_parameters(base)
    maps = film_maps(state)
    check_state_dict({k: tuple(p.shape) for k, p in params.items()}, maps, source, fix)
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(maps[name])
