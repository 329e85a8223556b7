"""Read an OpenVLA base in the published layout (config.json, safetensors, tokenizer), strictly."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from common.files import read_json

from .model_config import ModelLoadError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
SHARD_BYTES = 5 * 1024**3  # about the size of openvla-7b's own shards
HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model"]
# Old transformers saved RoPE frequencies; they are recomputed, never loaded.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
_LAYER_SCALE = ((".ls1.scale_factor", ".ls1.gamma"), (".ls2.scale_factor", ".ls2.gamma"))


def from_published_name(name: str) -> str:
    """Checkpoint key -> our parameter name (timm calls LayerScale's weight gamma)."""
    if name.startswith("vision_backbone."):
        for published, ours in _LAYER_SCALE:
            if name.endswith(published):
                return name[: -len(published)] + ours
    return name


def to_published_name(name: str) -> str:
    """Our parameter name -> checkpoint key."""
    if name.startswith("vision_backbone."):
        for published, ours in _LAYER_SCALE:
            if name.endswith(ours):
                return name[: -len(ours)] + published
    return name


def resolve_base_dir(base: str) -> Path:
    """A local directory as is; an "org/name" hub id through snapshot_download."""
    path = Path(base).expanduser()
    if path.is_dir():
        return path
    if base.count("/") != 1 or base.startswith((".", "/", "~")):
        raise ModelLoadError(
            f"base {base!r} is not 'tiny', 'openvla-7b-random', 'openvla-7b-slim', an existing "
            "directory or a hub id such as openvla/openvla-7b: fix the path or the name"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(base, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # any network/auth/offline failure gets the same advice
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(
            f"could not fetch {base} from the Hugging Face hub ({reason}); on a machine with "
            f"network run `hf download {base} --local-dir DIR` and pass base=DIR"
        ) from exc


def read_spec(directory: Path) -> dict:
    """config.json, checked for the fields the network is built from."""
    path = directory / "config.json"
    spec = read_json(path, ModelLoadError, "copy config.json of the base")
    missing = [k for k in ("timm_model_ids", "text_config") if k not in spec]
    if missing:
        raise ModelLoadError(f"{path}: missing {missing}; is this an openvla-7b style checkpoint?")
    return spec


def _weight_files(directory: Path) -> list[Path]:
    index = directory / INDEX_FILE
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [directory / shard for shard in shards]
    else:
        files = [directory / SINGLE_FILE]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise ModelLoadError(
            f"{directory}: weight file(s) {absent} missing; copy every *.safetensors shard "
            f"(and {INDEX_FILE} when sharded)"
        )
    return files


def load_safetensors(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file; truncated or overwritten, a ModelLoadError naming it."""
    try:
        return load_file(path, device=str(device))
    except SafetensorError as exc:  # the header no longer fits the file
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc})") from None


def read_state_dict(directory: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """All shards merged, keys as published."""
    state = {}
    for path in _weight_files(directory):
        for key, tensor in load_safetensors(path, device).items():
            if not key.endswith(_IGNORED_SUFFIXES):
                state[key] = tensor
    return state


def write_state_dict(
    state: dict[str, torch.Tensor], directory: Path, shard_bytes: int = SHARD_BYTES
) -> list[Path]:
    """The published layout read_state_dict reads: model.safetensors, or when larger than
    shard_bytes model-0000i-of-0000n.safetensors shards plus model.safetensors.index.json."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    if len(shards) == 1:
        names = [SINGLE_FILE]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        weight_map = {key: name for name, shard in zip(names, shards, strict=True) for key in shard}
        total = sum(t.numel() * t.element_size() for shard in shards for t in shard.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    for name, shard in zip(names, shards, strict=True):
        save_file(shard, directory / name, metadata={"format": "pt"})
    return [directory / name for name in names]


def published_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """What a checkpoint of this model holds: published key -> shape."""
    return {to_published_name(k): tuple(v.shape) for k, v in model.state_dict().items()}


def check_state_dict(
    expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], source: Path, fix: str
) -> None:
    """Every key present, none extra, every shape equal; else one ModelLoadError saying fix."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {expected[k]}"
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != expected[k]
    ]
    problems = [
        f"{len(items)} {label} e.g. {items[:3]}"
        for label, items in (
            ("missing key(s)", missing),
            ("unexpected key(s)", unexpected),
            ("shape mismatch(es)", mismatched),
        )
        if items
    ]
    if problems:
        raise ModelLoadError(f"{source}: {'; '.join(problems)}; {fix}")


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(directory)
    except Exception as exc:  # transformers raises many types for absent/broken files
        raise ModelLoadError(
            f"{directory}: no usable tokenizer ({type(exc).__name__}); copy the base's "
            "tokenizer files (tokenizer.json or tokenizer.model, tokenizer_config.json)"
        ) from exc
