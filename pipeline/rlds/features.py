"""features.json (TFDS's description of a set's features) -> one spec per flattened record key.

TFDS flattens nested features into `/`-joined keys (`steps/observation/image`); features
inside the `steps` Dataset hold one value per step, concatenated over the episode. Shapes
and dtypes come from here: a record's value lists are only split by them, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# TFDS feature classes by the last part of their pythonClassName.
_CONTAINERS = ("FeaturesDict", "Dataset")
# What a record stores each dtype in: tf.train.Example has floats, int64s and bytes.
FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")


class FeaturesError(Exception):
    """features.json is missing, not JSON, or not TFDS's layout; the message names the file."""


@dataclass(frozen=True)
class FeatureSpec:
    """One record key: what it holds and how to split its values."""

    key: str  # flattened name: `steps/action`, `episode_metadata/file_path`
    kind: str  # "tensor", "image", "text", or the TFDS class name of one not read
    dtype: str  # numpy dtype name of a tensor or image; "" for text
    shape: tuple[int, ...]  # of one step's value (in steps) or of the episode's; -1 unknown
    per_step: bool  # inside `steps`: one value per step
    problem: str = ""  # why this feature cannot be read ("" when it can)

    @property
    def size(self) -> int:
        """Values per step (or per episode) of a tensor."""
        n = 1
        for d in self.shape:
            n *= d
        return n


def _shape(info: dict) -> tuple[int, ...]:
    return tuple(int(d) for d in info.get("shape", {}).get("dimensions", []))


def _leaf(key: str, cls: str, node: dict, per_step: bool) -> FeatureSpec:
    """The spec of one non-container feature; `problem` says why it cannot be read."""
    if cls in ("Tensor", "Scalar"):
        info = node.get("tensor", {})
        dtype, shape = str(info.get("dtype", "")), _shape(info)
        problem = ""
        if info.get("encoding", "none") != "none":
            problem = f"a Tensor stored with encoding {info['encoding']!r}"
        elif dtype not in FLOAT_DTYPES + INT_DTYPES:
            problem = f"a Tensor of dtype {dtype!r}"
        elif any(d < 0 for d in shape):
            problem = f"a Tensor of unknown shape {shape} (stored ragged)"
        return FeatureSpec(key, "tensor", dtype, shape, per_step, problem)
    if cls == "Image":
        info = node.get("image", {})
        shape = _shape(info)
        problem = ""
        if str(info.get("dtype", "uint8")) != "uint8":
            problem = f"an Image of dtype {info['dtype']}"
        elif len(shape) != 3 or shape[2] not in (3, -1):
            problem = f"an Image of shape {shape} (needs H x W x 3)"
        return FeatureSpec(key, "image", "uint8", shape, per_step, problem)
    if cls == "Text":
        return FeatureSpec(key, "text", "", (), per_step)
    return FeatureSpec(key, cls, "", (), per_step, f"a {cls} feature, which is not read")


def _walk(node: dict, key: str, per_step: bool, out: dict[str, FeatureSpec]) -> None:
    cls = str(node.get("pythonClassName", "")).rsplit(".", 1)[-1]
    if cls == "FeaturesDict":
        for name, child in node.get("featuresDict", {}).get("features", {}).items():
            _walk(child, f"{key}/{name}" if key else name, per_step, out)
    elif cls == "Dataset" and not per_step:
        _walk(node.get("sequence", {}).get("feature", {}), key, True, out)
    elif cls == "Dataset":
        out[key] = FeatureSpec(key, cls, "", (), per_step, "a Dataset nested inside steps")
    else:
        out[key] = _leaf(key, cls, node, per_step)


def parse_features(data: object, source: str) -> dict[str, FeatureSpec]:
    """Every leaf feature of a parsed features.json, by flattened key."""
    if not isinstance(data, dict) or "FeaturesDict" not in str(data.get("pythonClassName", "")):
        raise FeaturesError(f"{source}: not a TFDS features.json (no top-level FeaturesDict)")
    out: dict[str, FeatureSpec] = {}
    _walk(data, "", False, out)
    return out


def read_features(path: Path) -> dict[str, FeatureSpec]:
    """features.json of a TFDS version folder."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise FeaturesError(
            f"{path} is missing: TFDS writes it beside dataset_info.json, and without it the "
            "shapes and dtypes of the records are unknown"
        ) from None
    except OSError as e:
        raise FeaturesError(f"{path}: unreadable ({e.strerror or e})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise FeaturesError(f"{path}: not valid JSON ({e})") from None
    return parse_features(data, str(path))
