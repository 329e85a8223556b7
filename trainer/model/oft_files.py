"""OpenVLA-OFT's checkpoint folder, read and written: lora_adapter/, the head, the statistics.

OFT's finetune.py saves `RUN--STEP_chkpt/` holding `lora_adapter/` (peft's save_pretrained),
`action_head--STEP_checkpoint.pt` (a torch state dict whose keys carry DDP's `module.` prefix),
`dataset_statistics.json` (the layout our stats.json already has) and, when it merged the
LoRA while training, the merged model beside them (then `lora_adapter/` may be gone: a
merged-only folder, whose merged weights are the base). FiLM runs add
`vision_backbone--STEP_checkpoint.pt` (oft_film.py). Its `--save_latest_checkpoint_only` runs
name the head `action_head--latest_checkpoint.pt` instead.
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from common.files import read_json, read_text
from shards.platforms import Platform, platform
from stats.compute import DatasetStats
from stats.io import parse_stats

from .action_model import ActionModel
from .model_config import ModelLoadError
from .model_files import adapter_shapes, load_module, load_weights
from .oft_film import load_film_maps
from .weights import load_safetensors

ADAPTER_DIR = "lora_adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
STATS_FILE = "dataset_statistics.json"
PLATFORM_FILE = "oft_platform.json"  # ours: the OFT platform an exported policy needs
DDP_PREFIX = "module."
FRESH_RANK = 32  # LoRA rank on a merged-only folder's weights: OFT's, starting at zero
_FILM_KEY = "vision_backbone.featurizer.blocks.0.scale.weight"
_COMPONENT = re.compile(r"(?P<name>[a-z_]+)--(?P<step>\d+|latest)_checkpoint\.pt")
# OFT components we have no counterpart for: a policy trained with them needs them to act,
# so loading it without them would predict something else. Refused, not ignored.
_UNSUPPORTED = {"noisy_action_projector": "the diffusion action head (--use_diffusion)"}
_KNOWN = ("action_head", "proprio_projector", "vision_backbone")
MERGED_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
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
    vision: dict[str, torch.Tensor] | None = None  # a FiLM run's vision_backbone file
    platform: str | None = None  # PLATFORM_FILE's, in folders vla-shards exported

    @property
    def merged_only(self) -> bool:
        """No lora_adapter/: the folder's merged weights are the base, LoRA starts at zero."""
        return not self.adapter

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
    """An OFT checkpoint folder: an action_head--* file beside lora_adapter/ or merged weights."""
    path = Path(path)
    weights = (path / ADAPTER_DIR).is_dir() or any((path / f).is_file() for f in MERGED_WEIGHTS)
    return weights and "action_head" in _components(path)


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
        if name not in _KNOWN:
            log.warning("%s: not an OFT component vla-shards knows; ignored", files[0])
    head_path = heads[0]
    head = _state_dict(head_path, "model.fc2.weight", "an L1 regression head")
    proprio = vision = None
    if "proprio_projector" in components:
        proprio = _state_dict(components["proprio_projector"][0], "fc1.weight", "a projector")
    if "vision_backbone" in components:
        vision = _state_dict(components["vision_backbone"][0], _FILM_KEY, "OFT's FiLM backbone")
    adapter, rank, base = _adapter(path)
    stats_path = path / STATS_FILE
    stats_text = read_text(stats_path, ModelLoadError)
    exported_for = None
    if (path / PLATFORM_FILE).is_file():
        note = read_json(path / PLATFORM_FILE, ModelLoadError, "vla-train export writes it")
        exported_for = note.get("platform")
    return OftCheckpoint(
        path=path,
        step=head_path.name.split("--")[1].removesuffix("_checkpoint.pt"),
        adapter=adapter,
        lora_rank=rank,
        base=base,
        head=head,
        stats=parse_stats(stats_text, str(stats_path)),
        proprio=proprio,
        vision=vision,
        platform=exported_for,
    )


def _adapter(path: Path) -> tuple[dict[str, torch.Tensor], int, str | None]:
    """lora_adapter/'s tensors, rank and base; for a merged-only folder none, the rank LoRA
    starts afresh with, and the folder itself as the base."""
    adapter_dir = path / ADAPTER_DIR
    if not adapter_dir.is_dir():
        return {}, FRESH_RANK, str(path)
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
    return load_safetensors(weights), rank, config.get("base_model_name_or_path") or None


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
    vision: dict[str, torch.Tensor] | None = None,
    target: Platform | None = None,
) -> None:
    """The files OFT's finetune.py writes for one step (the head with DDP's prefix, as a
    multi-GPU OFT run saves it; OFT strips it when loading either way). `vision`: a FiLM
    run's vision_backbone file (oft_film.py); `target`: the OFT platform, in PLATFORM_FILE."""
    adapter_dir = out / ADAPTER_DIR
    adapter_dir.mkdir(parents=True, exist_ok=True)
    save_file(adapter, adapter_dir / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    (adapter_dir / ADAPTER_CONFIG).write_text(adapter_config)
    prefixed = {DDP_PREFIX + k: v for k, v in head.items()}
    _save_torch(prefixed, out / f"action_head--{step}_checkpoint.pt")
    if proprio is not None:
        prefixed = {DDP_PREFIX + k: v for k, v in proprio.items()}
        _save_torch(prefixed, out / f"proprio_projector--{step}_checkpoint.pt")
    if vision is not None:  # saved by OFT from the wrapped backbone, so without `module.`
        _save_torch(vision, out / f"vision_backbone--{step}_checkpoint.pt")
    (out / STATS_FILE).write_text(stats_text)
    if target is not None:
        (out / PLATFORM_FILE).write_text(platform_note(target))


def _save_torch(state: dict[str, torch.Tensor], path: Path) -> None:
    """torch.save through memory: written by Python, a full disk is an OSError naming the
    file (torch's own writer reports it as a bare RuntimeError)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getvalue())


def platform_note(p: Platform) -> str:
    """PLATFORM_FILE: the constants OFT must run this policy with, and how OFT picks them."""
    others = [w for w in ("libero", "aloha", "bridge") if w != p.name]
    note = {
        "platform": p.name,
        "NUM_ACTIONS_CHUNK": p.chunk,
        "ACTION_DIM": p.action_dim,
        "PROPRIO_DIM": p.proprio_dim,
        "ACTION_PROPRIO_NORMALIZATION_TYPE": p.normalization,
        "how": f"OpenVLA-OFT's prismatic/vla/constants.py picks these from the words of its "
        f"command line: run its scripts with '{p.name}' in the command line (the script name, "
        f"a path or an option value) and without {' or '.join(repr(w) for w in others)}"
        + (" (looked for first)" if p.name != "libero" else ""),
    }
    return json.dumps(note, indent=2) + "\n"


@dataclass(frozen=True)
class OftOptions:
    """What an OFT folder does not record but our step-N folders do."""

    cameras: tuple[str, ...] = ()
    """Camera names in the order the OFT run fed its images, primary first."""
    chunk: int | None = None
    """OFT's NUM_ACTIONS_CHUNK; None: its platform's."""
    normalization: str | None = None
    """None: OFT's platform's."""
    image_aug: bool = True
    """OFT trains with augmentation by default and then evaluates on the centre crop."""
    dtype: str | None = None
    """Frozen base weights' dtype; None: bfloat16 on CUDA (as OFT runs it), float32 on the CPU."""
    robot: str | None = None
    """The OFT platform the run used (its command line's word); None: the folder's
    oft_platform.json when vla-shards exported it, else aloha for 14 dims, libero otherwise
    (OFT's default)."""

    def platform(self, oft: OftCheckpoint) -> Platform:
        name = self.robot or oft.platform or ("aloha" if oft.action_dim == 14 else "libero")
        try:
            return platform(name)
        except ValueError as exc:
            raise ModelLoadError(f"{oft.path}: {exc}") from None

    def resolved(self, oft: OftCheckpoint) -> OftOptions:
        """Platform defaults filled in; errors name the folder and the option to give."""
        if not self.cameras:
            raise ModelLoadError(
                f"{oft.path}: an OpenVLA-OFT folder does not record its cameras; give them in "
                "the order the run fed them (--cameras head,left_wrist or cameras=)"
            )
        target = self.platform(oft)
        chunk = self.chunk or target.chunk
        normalization = self.normalization or target.normalization
        return OftOptions(
            tuple(self.cameras), chunk, normalization, self.image_aug, self.dtype, target.name
        )


def load_oft_weights(model: ActionModel, oft: OftCheckpoint) -> None:
    """OFT's adapter (less the modules that never run, named), head and FiLM maps, strictly;
    a merged-only folder has no adapter: the model's LoRA stays at its start (zero change)."""
    fix = (
        "the OFT run used another base, LoRA rank or action width: pass the base it was trained on"
    )
    if oft.merged_only:
        load_module(model.action_head, oft.head, oft.head_source, fix)
    else:
        adapter = usable_adapter(oft.adapter, set(adapter_shapes(model)), oft.adapter_source)
        load_weights(model, adapter, oft.head, (oft.adapter_source, oft.head_source), fix)
    if oft.vision is not None:
        source = oft.path / f"vision_backbone--{oft.step}_checkpoint.pt"
        if not model.config.film:
            raise ModelLoadError(f"{source}: a FiLM policy's; the model was built without FiLM")
        load_film_maps(model.vla.get_base_model(), oft.vision, source, fix)
    if oft.proprio is not None:
        source = oft.path / f"proprio_projector--{oft.step}_checkpoint.pt"
        load_module(model.proprio_projector, oft.proprio, source, fix)
