"""OpenVLA-OFT's checkpoint folder, read and written: lora_adapter/, the head, the statistics.

OFT's finetune.py saves `RUN--STEP_chkpt/` holding `lora_adapter/` (peft's save_pretrained),
`action_head--STEP_checkpoint.pt` (a torch state dict whose keys carry DDP's `module.` prefix),
`dataset_statistics.json` (the layout our stats.json already has) and, when it merged the
LoRA while training, the merged model beside them. Its `--save_latest_checkpoint_only` runs
name the head `action_head--latest_checkpoint.pt` instead.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from common.files import read_json, read_text
from stats.compute import DatasetStats
from stats.io import parse_stats

from .action_model import ActionModel
from .model_config import ModelLoadError
from .model_files import adapter_shapes, load_module, load_weights

ADAPTER_DIR = "lora_adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
STATS_FILE = "dataset_statistics.json"
DDP_PREFIX = "module."
_COMPONENT = re.compile(r"(?P<name>[a-z_]+)--(?P<step>\d+|latest)_checkpoint\.pt")
# OFT components we have no counterpart for: a policy trained with them needs them to act,
# so loading it without them would predict something else. Refused, not ignored.
_UNSUPPORTED = {
    "noisy_action_projector": "the diffusion action head (--use_diffusion)",
    "vision_backbone": "FiLM language conditioning in the vision towers (--use_film)",
}
log = logging.getLogger(__name__)


@dataclass
class OftCheckpoint:
    """The tensors and statistics of one OFT checkpoint folder, head keys without `module.`."""

    path: Path
    step: str
    adapter: dict[str, torch.Tensor]
    lora_rank: int
    base: str | None  # the adapter config's base_model_name_or_path
    head: dict[str, torch.Tensor]
    stats: dict[str, DatasetStats]
    proprio: dict[str, torch.Tensor] | None = None  # the proprio projector, when it has one

    @property
    def action_dim(self) -> int:
        return int(self.head["model.fc2.weight"].shape[0])

    @property
    def adapter_source(self) -> Path:
        return self.path / ADAPTER_DIR / ADAPTER_WEIGHTS

    @property
    def head_source(self) -> Path:
        return self.path / f"action_head--{self.step}_checkpoint.pt"


def _components(path: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for file in sorted(path.iterdir()):
        if match := _COMPONENT.fullmatch(file.name):
            found.setdefault(match["name"], []).append(file)
    return found


def is_oft_folder(path: Path) -> bool:
    """An OFT checkpoint folder: a lora_adapter/ folder and an action_head--* file."""
    path = Path(path)
    return (path / ADAPTER_DIR).is_dir() and "action_head" in _components(path)


def strip_ddp_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as the module names them, whether it was saved from DDP (`module.`) or not."""
    return {k.removeprefix(DDP_PREFIX): v for k, v in state.items()}


def read_oft(path: Path) -> OftCheckpoint:
    """Read and check an OFT folder; errors name the file and say what to do."""
    path = Path(path)
    components = _components(path)
    heads = components.get("action_head", [])
    if len(heads) != 1:
        raise ModelLoadError(
            f"{path}: {len(heads)} action_head--*_checkpoint.pt files; an OpenVLA-OFT "
            "checkpoint folder holds exactly one (pass one RUN--STEP_chkpt folder)"
        )
    for name, feature in _UNSUPPORTED.items():
        if name in components:
            raise ModelLoadError(
                f"{components[name][0]}: this policy was trained with {feature}, which "
                "vla-shards does not have; it cannot predict the same actions here"
            )
    for name, files in components.items():
        if name not in ("action_head", "proprio_projector"):
            log.warning("%s: not an OFT component vla-shards knows; ignored", files[0])
    head_path = heads[0]
    head = _state_dict(head_path, "model.fc2.weight", "an L1 regression head")
    proprio = None
    if "proprio_projector" in components:
        proprio = _state_dict(components["proprio_projector"][0], "fc1.weight", "a projector")
    adapter_dir = path / ADAPTER_DIR
    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ModelLoadError(
            f"{weights} is missing; OFT's lora_adapter/ is written by peft's save_pretrained "
            "(safetensors since peft 0.6)"
        )
    config_path = adapter_dir / ADAPTER_CONFIG
    config = read_json(config_path, ModelLoadError, "peft's save_pretrained writes it")
    try:
        rank = int(config["r"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{config_path}: no LoRA rank r ({exc})") from None
    stats_path = path / STATS_FILE
    stats_text = read_text(stats_path, ModelLoadError)
    return OftCheckpoint(
        path=path,
        step=head_path.name.split("--")[1].removesuffix("_checkpoint.pt"),
        adapter=load_file(weights),
        lora_rank=rank,
        base=config.get("base_model_name_or_path") or None,
        head=head,
        stats=parse_stats(stats_text, str(stats_path)),
        proprio=proprio,
    )


def _state_dict(path: Path, key: str, what: str) -> dict[str, torch.Tensor]:
    """One OFT component file, `module.` prefix stripped; it must hold `key`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise ModelLoadError(f"{path}: not a readable torch state dict ({exc})") from exc
    if not isinstance(state, dict) or key not in strip_ddp_prefix(state):
        raise ModelLoadError(f"{path}: not {what}'s state dict (no {key})")
    return strip_ddp_prefix(state)


def usable_adapter(
    adapter: dict[str, torch.Tensor], expected: set[str], source: Path
) -> dict[str, torch.Tensor]:
    """The adapter's tensors our model has, naming (in one warning) the modules left out.

    OFT's "all-linear" also adapts lm_head, each tower's last block and SigLIP's attn_pool,
    which the forward pass never runs (their LoRA stays at its initial value): leaving them
    out changes no prediction. Missing and mis-shaped tensors are the strict check's job.
    """
    extra = sorted(set(adapter) - expected)
    if extra:
        modules = sorted({k.removeprefix("base_model.model.").split(".lora_")[0] for k in extra})
        log.warning(
            "%s: ignored %d LoRA tensors of %d modules the forward pass never runs: %s",
            source, len(extra), len(modules), ", ".join(modules),
        )  # fmt: skip
    return {k: v for k, v in adapter.items() if k in expected}


def write_oft(
    out: Path,
    step: int,
    adapter: dict[str, torch.Tensor],
    adapter_config: str,
    head: dict[str, torch.Tensor],
    stats_text: str,
    proprio: dict[str, torch.Tensor] | None = None,
) -> None:
    """The files OFT's finetune.py writes for one step (the head with DDP's prefix, as a
    multi-GPU OFT run saves it; OFT strips it when loading either way)."""
    adapter_dir = out / ADAPTER_DIR
    adapter_dir.mkdir(parents=True, exist_ok=True)
    save_file(adapter, adapter_dir / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    (adapter_dir / ADAPTER_CONFIG).write_text(adapter_config)
    prefixed = {DDP_PREFIX + k: v for k, v in head.items()}
    torch.save(prefixed, out / f"action_head--{step}_checkpoint.pt")
    if proprio is not None:
        prefixed = {DDP_PREFIX + k: v for k, v in proprio.items()}
        torch.save(prefixed, out / f"proprio_projector--{step}_checkpoint.pt")
    (out / STATS_FILE).write_text(stats_text)


# OFT sets chunk and normalization per robot platform in prismatic/vla/constants.py, keyed
# here by action width: LIBERO (7 dims, chunks of 8, q01/q99) and ALOHA (14 dims, chunks of
# 25, min/max for its absolute joints).
PLATFORM_CHUNK = {7: 8, 14: 25}
PLATFORM_NORMALIZATION = {7: "bounds_q99", 14: "bounds"}


@dataclass(frozen=True)
class OftOptions:
    """What an OFT folder does not record but our step-N folders do."""

    cameras: tuple[str, ...] = ()
    """Camera names in the order the OFT run fed its images, primary first."""
    chunk: int | None = None
    """OFT's NUM_ACTIONS_CHUNK; None: its platform's (8 for 7 dims, 25 for 14)."""
    normalization: str | None = None
    """None: OFT's platform's (bounds for 14 dims, bounds_q99 otherwise)."""
    image_aug: bool = True
    """OFT trains with augmentation by default and then evaluates on the centre crop."""
    dtype: str | None = None
    """Frozen base weights' dtype; None: bfloat16 on CUDA (as OFT runs it), float32 on the CPU."""

    def resolved(self, action_dim: int, source: Path) -> OftOptions:
        """Platform defaults filled in; errors name the folder and the option to give."""
        if not self.cameras:
            raise ModelLoadError(
                f"{source}: an OpenVLA-OFT folder does not record its cameras; give them in "
                "the order the run fed them (--cameras head,left_wrist or cameras=)"
            )
        chunk = self.chunk or PLATFORM_CHUNK.get(action_dim)
        if chunk is None:
            raise ModelLoadError(
                f"{source}: {action_dim}-dim actions match no OFT platform; give the run's "
                "NUM_ACTIONS_CHUNK (chunk=)"
            )
        normalization = self.normalization or PLATFORM_NORMALIZATION.get(action_dim, "bounds_q99")
        return OftOptions(tuple(self.cameras), chunk, normalization, self.image_aug, self.dtype)


def load_oft_weights(model: ActionModel, oft: OftCheckpoint) -> None:
    """OFT's adapter (less the modules that never run, named) and head, strictly."""
    adapter = usable_adapter(oft.adapter, set(adapter_shapes(model)), oft.adapter_source)
    fix = (
        "the OFT run used another base, LoRA rank or action width: pass the base it was trained on"
    )
    load_weights(model, adapter, oft.head, (oft.adapter_source, oft.head_source), fix)
    if oft.proprio is not None:
        source = oft.path / f"proprio_projector--{oft.step}_checkpoint.pt"
        load_module(model.proprio_projector, oft.proprio, source, fix)
