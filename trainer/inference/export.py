"""`vla-train export`: a step-N/ folder in OpenVLA-OFT's layout, or merged into the base weights."""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from common.files import read_text
from shards.format import STATS_FILE
from shards.platforms import Platform, PlatformMismatch, oft_platform
from trainer.inference.checkpoint_info import CheckpointInfo, read_checkpoint
from trainer.inference.policy import resolve_device
from trainer.model import ActionModel, load_model
from trainer.model.adapter_config import config_for_peft_011
from trainer.model.model_config import BASE_7B_RANDOM, BASE_7B_SLIM, BASE_TINY
from trainer.model.model_files import ADAPTER_FILE, HEAD_FILE, PROPRIO_FILE, read_tensors
from trainer.model.oft_files import write_oft
from trainer.model.oft_film import oft_vision_state, without_film
from trainer.model.weights import (
    INDEX_FILE,
    published_shapes,
    resolve_base_dir,
    to_published_name,
    write_state_dict,
)
from trainer.run.checkpoint import CheckpointError
from trainer.run.disk_space import folder_bytes
from trainer.run.folder_write import write_folder
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
    """Write cfg.out whole or not at all (a temporary folder renamed at the end), after
    checking the checkpoint's checksums and the space the output needs. An OFT export is
    refused, in one line, when OFT would decode the policy differently than it was trained
    (chunk, widths, normalization), its fine-tuning would normalize the actions differently
    (masks), or its peft could not read the adapter config."""
    info = read_checkpoint(cfg.step_dir)
    if info.oft is not None:
        raise CheckpointError(f"{cfg.step_dir}: already an OpenVLA-OFT folder; nothing to export")
    for part, flag, where in (
        (info.model.proprio_dim, "the robot state (--proprio)", "its projector"),
        (info.model.film, "--film", "its FiLM maps"),
    ):
        if part and cfg.to == "merged":
            raise CheckpointError(
                f"{cfg.step_dir}: trained with {flag}; openvla-7b's layout has no place for "
                f"{where}: export --to oft, which writes it in OpenVLA-OFT's own file"
            )
    target = adapter_config = None
    if cfg.to == "oft":
        target = run_platform(info, cfg.step_dir)
        config_path = cfg.step_dir / ADAPTER_CONFIG
        adapter_config = config_for_peft_011(read_text(config_path, CheckpointError), config_path)
    out_existed = cfg.out.exists()
    model = load_model(cfg.step_dir, cfg.base, resolve_device(cfg.device))
    needed = sum(t.numel() * t.element_size() for t in model.vla.state_dict().values())
    if cfg.to == "oft":
        needed += folder_bytes(cfg.step_dir)
    # Unique to this process: exports running at once never share or delete each other's.
    tmp = cfg.out.parent / f".{cfg.out.name}.export-{os.getpid()}-{secrets.token_hex(4)}"
    cfg.out.parent.mkdir(parents=True, exist_ok=True)

    def write(folder: Path) -> None:
        if target is not None:
            _write_oft_files(cfg.step_dir, folder, model, adapter_config, target)
        write_merged(model, folder)

    write_folder(tmp, write, needed, str(cfg.out), False)
    _move_into_place(tmp, cfg.out, out_existed)
    return cfg.out


def _move_into_place(tmp: Path, out: Path, out_existed: bool) -> None:
    """Rename `tmp` to `out`: over the empty folder that was there, or where none was; OUT
    written by someone else meanwhile is refused and left alone."""
    try:
        if not out_existed and out.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(out))
        os.rename(tmp, out)  # replaces an empty folder; a filled one fails (ENOTEMPTY)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise CheckpointError(
                f"{out}: appeared while exporting (another export into it?); left as it is, "
                "nothing written; choose a new OUT"
            ) from None
        raise


def run_platform(info: CheckpointInfo, source: Path) -> Platform:
    """The OFT platform the run's policy decodes right under, its datasets' action masks
    the platform's; PlatformMismatch otherwise."""
    try:
        return oft_platform(
            info.run.robot, info.model.chunk, info.model.action_dim, info.model.proprio_dim,
            info.run.normalization, [s.action.mask for _, s in sorted(info.stats.items())],
        )  # fmt: skip
    except PlatformMismatch as exc:
        raise PlatformMismatch(f"{source}: {exc}") from None


def _write_oft_files(
    step_dir: Path, out: Path, model: ActionModel, adapter_config: str, target: Platform
) -> None:
    match = _STEP.fullmatch(step_dir.name)
    step = int(match.group(1)) if match else 0
    vision = None
    if model.config.film:
        vision = oft_vision_state(model.vla.get_base_model(), model.config.lora_rank)
    write_oft(
        out, step,
        adapter=read_tensors(step_dir / ADAPTER_FILE),
        adapter_config=adapter_config,
        head=read_tensors(step_dir / HEAD_FILE),
        stats_text=(step_dir / STATS_FILE).read_text(),
        proprio=read_tensors(step_dir / PROPRIO_FILE) if model.config.proprio_dim else None,
        vision=vision,
        target=target,
    )  # fmt: skip


def write_merged(policy: ActionModel, out: Path) -> None:
    """The base with LoRA folded in (W + BA * alpha/r), published names, beside the base's
    config and tokenizer files: a folder `--base` (ours) or from_pretrained (OFT's) reads."""
    base_name = policy.config.base
    merged = policy.vla.merge_and_unload()
    state = without_film({to_published_name(k): v for k, v in merged.state_dict().items()})
    if set(state) != set(without_film(published_shapes(merged))):
        raise RuntimeError("merged state dict does not have the published names")
    write_state_dict(state, out)
    if base_name in (BASE_TINY, BASE_7B_RANDOM, BASE_7B_SLIM):
        (out / "config.json").write_text(json.dumps(merged.spec, indent=2, sort_keys=True) + "\n")
        policy.tokenizer.save_pretrained(out)
        return
    # The base's own config, tokenizer, processor and remote-code files: the weights keep
    # every name and shape, so they still describe the merged model.
    source = resolve_base_dir(base_name)
    for file in sorted(source.iterdir()):
        if file.is_file() and not file.name.endswith(".safetensors") and file.name != INDEX_FILE:
            shutil.copy2(file, out / file.name)
