"""Turn ModelConfig.base into an OpenVLA network and tokenizer: tiny, 7B random, dir or hub id."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import PreTrainedTokenizerBase

from .model_config import (
    BASE_7B_RANDOM,
    BASE_7B_SLIM,
    BASE_TINY,
    OPENVLA_7B_SLIM_SPEC,
    OPENVLA_7B_SPEC,
    tiny_spec,
)
from .tokenizer import tiny_tokenizer
from .vision import set_spatial_positions
from .vla import OpenVLA
from .weights import (
    check_state_dict,
    from_published_name,
    load_tokenizer,
    published_shapes,
    read_spec,
    read_state_dict,
    resolve_base_dir,
)

RANDOM_BASE_SEED = 0
TINY_POSITION_SCALE = 1.0  # about a patch's content scale after the patch embedding


@contextmanager
def _default_dtype(dtype: torch.dtype):
    # Building 7B directly in bf16 avoids a 28 GB float32 detour.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _place(model: OpenVLA, device: torch.device, dtype: torch.dtype) -> OpenVLA:
    """Move to device/dtype, then rebuild RoPE so its frequencies stay float32 as in HF."""
    model.to(device=device, dtype=dtype)
    llm = model.language_model.model
    with torch.device(device):
        llm.rotary_emb = type(llm.rotary_emb)(config=model.language_model.config)
    return model


def random_base(
    spec: dict, device: torch.device, dtype: torch.dtype, build_device: torch.device
) -> OpenVLA:
    """Random weights from a fixed seed, so a saved adapter finds the same base again."""
    devices = [build_device] if build_device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(RANDOM_BASE_SEED)
        with torch.device(build_device), _default_dtype(dtype):
            model = OpenVLA(spec)
    return _place(model, device, dtype)


def loaded_base(spec: dict, state: dict[str, torch.Tensor], source, device, dtype) -> OpenVLA:
    """Build on the meta device (no memory), check strictly, then adopt the loaded tensors."""
    with torch.device("meta"):
        model = OpenVLA(spec)
    fix = "re-download the checkpoint, or fix config.json so it describes these weights"
    check_state_dict(published_shapes(model), state, source, fix)
    ours = {from_published_name(k): v for k, v in state.items()}
    model.load_state_dict(ours, strict=True, assign=True)
    # RoPE buffers are not in checkpoints; give them real storage before moving.
    llm = model.language_model.model
    llm.rotary_emb = type(llm.rotary_emb)(config=model.language_model.config)
    return _place(model, device, dtype)


def build_base(
    base: str, device: torch.device | str, dtype: torch.dtype
) -> tuple[OpenVLA, PreTrainedTokenizerBase]:
    device = torch.device(device)
    if base == BASE_TINY:
        tokenizer = tiny_tokenizer()
        # Drawn on CPU, so the tiny base is the same whatever the device.
        spec = tiny_spec(tokenizer.pad_token_id)
        model = random_base(spec, device, dtype, torch.device("cpu"))
        set_spatial_positions(model.vision_backbone, TINY_POSITION_SCALE)
        return model, tokenizer
    if base == BASE_7B_RANDOM:
        # No Llama tokenizer offline: the tiny one's ids (< 256) are valid rows of the 32064
        # vocab, and padding uses the config's 32000. Prompts come out a little longer.
        # Drawn on the device for speed: its weights depend on the device type.
        return random_base(OPENVLA_7B_SPEC, device, dtype, device), tiny_tokenizer()
    if base == BASE_7B_SLIM:
        # Drawn on CPU like tiny, so a checkpoint finds the same base on any device.
        return random_base(
            OPENVLA_7B_SLIM_SPEC, device, dtype, torch.device("cpu")
        ), tiny_tokenizer()
    directory = resolve_base_dir(base)
    spec = read_spec(directory)
    state = read_state_dict(directory, device)
    return loaded_base(spec, state, directory, device, dtype), load_tokenizer(directory)
