"""Run by tests/test_oft_adapter.py under peft 0.11.1 (OpenVLA-OFT's pin): load an exported
lora_adapter/ onto a model holding the base weights, with a transformers LlamaForCausalLM as
its language model, merge it, and save the merged weights.

Usage: python peft011_merge.py ADAPTER_DIR BASE.safetensors CONFIG.json OUT.safetensors
"""

import json
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM


def _child(root: nn.Module, path: list[str]) -> nn.Module:
    for name in path:
        if not hasattr(root, name):
            root.add_module(name, nn.Module())
        root = getattr(root, name)
    return root


def shell(state: dict, text_config: dict) -> nn.Module:
    """Modules named and shaped as the state dict says: Linear for 2-D weights, Conv2d
    (stride = kernel, a patch embedding) for 4-D ones, bare parameters otherwise."""
    model = nn.Module()
    model.language_model = LlamaForCausalLM(LlamaConfig(**text_config))
    for key, tensor in sorted(state.items()):
        if key.startswith("language_model."):
            continue
        *path, name = key.split(".")
        weight = state.get(".".join(path + ["weight"]))
        if name in ("weight", "bias") and weight is not None and weight.ndim in (2, 4):
            parent = _child(model, path[:-1])
            if not hasattr(parent, path[-1]) or type(getattr(parent, path[-1])) is nn.Module:
                bias = ".".join(path + ["bias"]) in state
                if weight.ndim == 2:
                    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
                else:
                    kernel = tuple(weight.shape[2:])
                    layer = nn.Conv2d(weight.shape[1], weight.shape[0], kernel, kernel, bias=bias)
                setattr(parent, path[-1], layer)
            continue
        _child(model, path).register_parameter(name, nn.Parameter(torch.zeros_like(tensor)))
    model.load_state_dict(state, strict=True)
    return model


def main(adapter_dir: str, base: str, config: str, out: str) -> None:
    state = load_file(base)
    with open(config) as f:
        text_config = json.load(f)["text_config"]
    model = shell(state, text_config)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    save_file({k: v.contiguous() for k, v in merged.state_dict().items()}, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
