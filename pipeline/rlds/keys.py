"""Which record keys are an episode's cameras, action, proprio and instruction.

RLDS sets name them in a few ways: OpenVLA-OFT's LIBERO and ALOHA sets keep `steps/action`,
`steps/observation/state` and `steps/language_instruction`; Open X-Embodiment sets keep
`steps/observation/natural_language_instruction` and often an action dict (RT-1's
`world_vector`, `rotation_delta`, `gripper_closedness_action`; Bridge's `open_gripper`).
Decided once per set, from features.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.rlds.features import FeatureSpec

OBSERVATION = "steps/observation/"
ACTION = "steps/action"
# Proprio: the first of these a set has (OFT's `state`, then the usual OXE names).
PROPRIO_NAMES = ("state", "proprio", "joint_state", "EEF_state")
INSTRUCTION_KEYS = ("steps/language_instruction", OBSERVATION + "natural_language_instruction")
# Action dicts read as (position delta, rotation delta, gripper), RT-1's 7-dim convention.
ACTION_PARTS = (
    ("world_vector",),
    ("rotation_delta",),
    ("gripper_closedness_action", "open_gripper"),
)
FILE_PATH = "episode_metadata/file_path"


class KeysError(Exception):
    """A set whose features do not say where its action is; the message lists what it has."""


@dataclass(frozen=True)
class EpisodeKeys:
    """Where an episode's parts are in its record."""

    cameras: dict[str, str]  # own camera name -> record key
    action: tuple[str, ...]  # concatenated in this order
    proprio: str | None
    instruction: str | None
    file_path: str | None


def _readable(spec: FeatureSpec | None, kind: str) -> bool:
    return spec is not None and spec.kind == kind and not spec.problem


def _action(features: dict[str, FeatureSpec]) -> tuple[str, ...]:
    spec = features.get(ACTION)
    if spec is not None:
        if spec.problem:
            raise KeysError(f"{ACTION} is {spec.problem}")
        if spec.kind != "tensor" or len(spec.shape) != 1 or not spec.per_step:
            raise KeysError(
                f"{ACTION} is a {spec.kind} of shape {spec.shape}; it must be a 1-D tensor per step"
            )
        return (ACTION,)
    parts = {k[len(ACTION) + 1 :]: s for k, s in features.items() if k.startswith(ACTION + "/")}
    if not parts:
        found = ", ".join(k for k in features if k.startswith("steps/")) or "none"
        raise KeysError(f"no {ACTION} feature (steps features: {found})")
    chosen = []
    for names in ACTION_PARTS:
        name = next((n for n in names if n in parts), None)
        if name is None:
            raise KeysError(
                f"{ACTION} is a dict of {', '.join(sorted(parts))}; a dict action is read as "
                f"{' + '.join('|'.join(n) for n in ACTION_PARTS)}; this one lacks "
                f"{'|'.join(names)}"
            )
        spec = parts[name]
        if not _readable(spec, "tensor") or len(spec.shape) > 1:
            raise KeysError(
                f"{ACTION}/{name} is {spec.problem or f'of shape {spec.shape}'}; needs a 1-D tensor"
            )
        chosen.append(f"{ACTION}/{name}")
    return tuple(chosen)


def episode_keys(features: dict[str, FeatureSpec]) -> EpisodeKeys:
    """The keys of a set's parts; KeysError when it has no readable action."""
    cameras = {
        key[len(OBSERVATION) :].replace("/", "_"): key
        for key, spec in features.items()
        if key.startswith(OBSERVATION) and spec.kind == "image" and spec.per_step
    }
    proprio = next(
        (
            OBSERVATION + n
            for n in PROPRIO_NAMES
            if _readable(features.get(OBSERVATION + n), "tensor")
            and len(features[OBSERVATION + n].shape) == 1
        ),
        None,
    )
    instruction = next((k for k in INSTRUCTION_KEYS if _readable(features.get(k), "text")), None)
    file_path = FILE_PATH if _readable(features.get(FILE_PATH), "text") else None
    return EpisodeKeys(cameras, _action(features), proprio, instruction, file_path)
