"""`vla-train export`: a step-N/ folder in OpenVLA-OFT's layout, or merged into the base weights."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from shards.format import STATS_FILE
from trainer.inference.checkpoint_info import read_checkpoint
from trainer.inference.policy import resolve_device
from trainer.model import ActionModel, load_model
from trainer.model.model_config import BASE_7B_RANDOM, BASE_TINY
from trainer.model.model_files import ADAPTER_FILE, HEAD_FILE, PROPRIO_FILE, read_tensors
from trainer.model.oft_files import write_oft
from trainer.model.weights import (
    INDEX_FILE,
    published_shapes,
    resolve_base_dir,
    to_published_name,
    write_state_dict,
)
from trainer.run.checkpoint import CheckpointError
from trainer.run.train_config import ConfigError

TARGETS = ("oft", "merged")
ADAPTER_CONFIG = "adapter_config.json"  # written by peft beside the adapter
_STEP = re.compile(r"step-(\d+)")


@dataclass
class ExportConfig:
    """Which checkpoint to write where, in which layout."""

    step_dir: Path
    """A RUN_DIR/step-N folder."""
    out: Path
    """A new (or empty) folder to write."""
    to: str = "oft"
    """"oft": OFT's checkpoint folder (lora_adapter/, action_head--N_checkpoint.pt,
    dataset_statistics.json) plus the merged model OFT's evaluation loads from it;
    "merged": the LoRA merged into the base, in openvla-7b's layout."""
    base: str | None = None
    """Base to merge into; default the one the run trained on."""
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.step_dir, self.out = Path(self.step_dir), Path(self.out)
        if self.to not in TARGETS:
            raise ConfigError(f"--to must be one of {', '.join(TARGETS)}")
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ConfigError(f"{self.out}: exists and is not an empty folder; choose a new OUT")


def export(cfg: ExportConfig) -> Path:
    """Write cfg.out whole or not at all (a temporary folder renamed at the end)."""
    info = read_checkpoint(cfg.step_dir)
    if info.oft is not None:
        raise CheckpointError(f"{cfg.step_dir}: already an OpenVLA-OFT folder; nothing to export")
    if info.model.film:
        raise CheckpointError(
            f"{cfg.step_dir}: trained with --film; exporting FiLM towers is not supported yet "
            "(openvla-7b's layout has no place for them)"
        )
    if info.model.proprio_dim and cfg.to == "merged":
        raise CheckpointError(
            f"{cfg.step_dir}: trained with the robot state (--proprio); openvla-7b's layout "
            "has no place for its projector: export --to oft, which writes it beside the head"
        )
    tmp = cfg.out.parent / f".{cfg.out.name}.export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if cfg.to == "oft":
            match = _STEP.fullmatch(cfg.step_dir.name)
            write_oft(
                tmp,
                int(match.group(1)) if match else 0,
                adapter=read_tensors(cfg.step_dir / ADAPTER_FILE),
                adapter_config=(cfg.step_dir / ADAPTER_CONFIG).read_text(),
                head=read_tensors(cfg.step_dir / HEAD_FILE),
                stats_text=(cfg.step_dir / STATS_FILE).read_text(),
                proprio=read_tensors(cfg.step_dir / PROPRIO_FILE) if info.model.proprio_dim
                else None,
            )  # fmt: skip
        policy = load_model(cfg.step_dir, cfg.base, resolve_device(cfg.device))
        write_merged(policy, tmp)
        if cfg.out.exists():
            cfg.out.rmdir()  # checked empty above
        os.replace(tmp, cfg.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cfg.out


def write_merged(policy: ActionModel, out: Path) -> None:
    """The base with LoRA folded in (W + BA * alpha/r), published names, beside the base's
    config and tokenizer files: a folder `--base` (ours) or from_pretrained (OFT's) reads."""
    base_name = policy.config.base
    merged = policy.vla.merge_and_unload()
    state = {to_published_name(k): v for k, v in merged.state_dict().items()}
    if set(state) != set(published_shapes(merged)):
        raise RuntimeError("merged state dict does not have the published names")
    write_state_dict(state, out)
    if base_name in (BASE_TINY, BASE_7B_RANDOM):
        (out / "config.json").write_text(json.dumps(merged.spec, indent=2, sort_keys=True) + "\n")
        policy.tokenizer.save_pretrained(out)
        return
    # The base's own config, tokenizer, processor and remote-code files: the weights keep
    # every name and shape, so they still describe the merged model.
    source = resolve_base_dir(base_name)
    for file in sorted(source.iterdir()):
        if file.is_file() and not file.name.endswith(".safetensors") and file.name != INDEX_FILE:
            shutil.copy2(file, out / file.name)
