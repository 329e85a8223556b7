"""A saved policy's files: peft adapter files, action_head.safetensors (and the proprio projector
and FiLM maps when the model has them) and model_config.json."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from common.files import read_json

from .action_model import ActionModel, build_model
from .film import film_parameters
from .head import with_current_names
from .model_config import ModelConfig, ModelLoadError
from .weights import check_state_dict

ADAPTER_FILE = "adapter_model.safetensors"  # written by peft's save_pretrained
HEAD_FILE = "action_head.safetensors"
PROPRIO_FILE = "proprio_projector.safetensors"  # with a proprio_dim
FILM_FILE = "film.safetensors"  # with film: the FiLM maps, named as in the base model
MODEL_CONFIG_FILE = "model_config.json"


def save_model(policy: ActionModel, out_dir: Path) -> None:
    """Adapter as peft writes it (PeftModel.from_pretrained loads it), head, and ModelConfig."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policy.vla.save_pretrained(out_dir)
    save_file(_tensors(policy.action_head.state_dict()), out_dir / HEAD_FILE)
    if policy.proprio_projector is not None:
        save_file(_tensors(policy.proprio_projector.state_dict()), out_dir / PROPRIO_FILE)
    if policy.config.film:
        save_file(_tensors(film_parameters(policy.vla.get_base_model())), out_dir / FILM_FILE)
    (out_dir / MODEL_CONFIG_FILE).write_text(json.dumps(asdict(policy.config), indent=2) + "\n")


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def read_model_config(ckpt_dir: Path) -> ModelConfig:
    path = ckpt_dir / MODEL_CONFIG_FILE
    fix = "point at a folder save_model wrote"
    fields = read_json(path, ModelLoadError, fix)
    try:
        return ModelConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a model config ({exc}); {fix}") from None


def read_tensors(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; point at a folder save_model wrote")
    return load_file(path, device=str(device))


def adapter_shapes(policy: ActionModel) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in get_peft_model_state_dict(policy.vla).items()}


def load_weights(
    policy: ActionModel,
    adapter: dict[str, torch.Tensor],
    head: dict[str, torch.Tensor],
    sources: tuple[Path, Path],
    fix: str,
) -> None:
    """Adapter and head into `policy`, strictly: every key, nothing extra, every shape."""
    check_state_dict(adapter_shapes(policy), adapter, sources[0], fix)
    set_peft_model_state_dict(policy.vla, adapter)
    load_module(policy.action_head, head, sources[1], fix)


def load_module(
    module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, fix: str
) -> None:
    """`state` into `module` strictly; a wrong key or shape names `source` and the fix."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_state_dict(expected, state, source, fix)
    module.load_state_dict(state)


def load_model(
    ckpt_dir: Path, base: str | None = None, device: torch.device | str = "cpu"
) -> ActionModel:
    """Rebuild the saved policy (on `base` when given) and load adapter and head strictly."""
    ckpt_dir = Path(ckpt_dir)
    config = read_model_config(ckpt_dir)
    if base is not None:
        config = replace(config, base=base)
    policy = build_model(config, device)
    load_saved_weights(policy, ckpt_dir, device)
    return policy


def load_saved_weights(policy: ActionModel, ckpt_dir: Path, device: torch.device | str) -> None:
    """A folder save_model wrote, into an already built policy of the same shape."""
    fix = "the checkpoint was saved with a different base or ModelConfig: pass the right base"
    sources = (ckpt_dir / ADAPTER_FILE, ckpt_dir / HEAD_FILE)
    adapter, head = (read_tensors(path, device) for path in sources)
    load_weights(policy, adapter, with_current_names(head), sources, fix)
    if policy.proprio_projector is not None:
        path = ckpt_dir / PROPRIO_FILE
        load_module(policy.proprio_projector, read_tensors(path, device), path, fix)
    if policy.config.film:
        path = ckpt_dir / FILM_FILE
        film = read_tensors(path, device)
        params = film_parameters(policy.vla.get_base_model())
        check_state_dict({k: tuple(v.shape) for k, v in params.items()}, film, path, fix)
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(film[name])
