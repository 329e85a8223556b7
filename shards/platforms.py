"""OpenVLA-OFT's robot platforms: the constants its code decodes every checkpoint with.

OFT's prismatic/vla/constants.py picks one platform per process from the words of its command
line (`libero` first, then `aloha`, then `bridge`; LIBERO when none appears) and sets the action
chunk, the action and proprio widths and the normalization from it. A checkpoint records none
of them, so a policy trained with other values is decoded wrongly by OFT without any error.
The masks are the actions OFT's data pipeline leaves unnormalized: its EEF_POS encoding (LIBERO,
BRIDGE) keeps the gripper raw, its bimanual joint encoding (ALOHA) normalizes every dimension.
OFT's inference takes the mask from dataset_statistics.json, but its fine-tuning normalizes with
the platform's: a policy trained with another mask would be taught other targets there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.errors import UserError
from stats.normalize import NORMALIZATIONS


@dataclass(frozen=True)
class Platform:
    """One robot platform of OFT's constants table."""

    name: str
    """The word that selects it on OFT's command line."""
    chunk: int
    """NUM_ACTIONS_CHUNK: action rows predicted at once."""
    action_dim: int
    """ACTION_DIM."""
    proprio_dim: int
    """PROPRIO_DIM: the width of the robot state OFT's projector takes."""
    normalization: str
    """ACTION_PROPRIO_NORMALIZATION_TYPE, for actions and robot state alike."""
    no_normalize_dims: tuple[int, ...]
    """Action dims OFT's pipeline leaves raw (mask false)."""

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalization!r}")
        if any(not 0 <= d < self.action_dim for d in self.no_normalize_dims):
            raise ValueError("no_normalize_dims out of range")

    @property
    def mask(self) -> list[bool]:
        """The action normalization mask OFT's dataset_statistics.json holds."""
        return [d not in self.no_normalize_dims for d in range(self.action_dim)]


PLATFORMS = {
    "libero": Platform("libero", 8, 7, 8, "bounds_q99", (6,)),
    "aloha": Platform("aloha", 25, 14, 14, "bounds", ()),
    "bridge": Platform("bridge", 5, 7, 7, "bounds_q99", (6,)),
}
DEFAULT_PLATFORM = "libero"  # what OFT uses when its command line names none


def platform(name: str) -> Platform:
    """The platform called `name`; ValueError naming the choices otherwise."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(f"unknown robot {name!r}; use one of {', '.join(PLATFORMS)}") from None


def platform_from_command_line(words: Sequence[str]) -> Platform:
    """The platform OFT's constants.py chooses for a command line (LIBERO by default)."""
    line = " ".join(words).lower()
    for name in ("libero", "aloha", "bridge"):  # OFT's order: the first word found wins
        if name in line:
            return PLATFORMS[name]
    return PLATFORMS[DEFAULT_PLATFORM]


def decode_mismatch(
    target: Platform, chunk: int, action_dim: int, proprio_dim: int, normalization: str
) -> str | None:
    """What OFT would decode differently for a run with these values under `target`
    (None: nothing). `proprio_dim` 0 is a run without the robot state, which fits any."""
    return ", ".join(_differences(target, chunk, action_dim, proprio_dim, normalization)) or None


def _differences(
    target: Platform, chunk: int, action_dim: int, proprio_dim: int, normalization: str
) -> list[str]:
    wrong = []
    if chunk != target.chunk:
        wrong.append(f"chunk {chunk} (OFT's {target.name} uses {target.chunk})")
    if action_dim != target.action_dim:
        wrong.append(f"{action_dim} action dims ({target.name}: {target.action_dim})")
    if proprio_dim and proprio_dim != target.proprio_dim:
        wrong.append(f"{proprio_dim} proprio dims ({target.name}: {target.proprio_dim})")
    if normalization != target.normalization:
        wrong.append(f"normalization {normalization} ({target.name}: {target.normalization})")
    return wrong


def matching_platforms(
    chunk: int, action_dim: int, proprio_dim: int, normalization: str | None = None
) -> list[Platform]:
    """The platforms OFT would decode these values with unchanged; `normalization` None
    matches any (a shard set does not fix it: the run chooses)."""
    return [
        p
        for p in PLATFORMS.values()
        if decode_mismatch(p, chunk, action_dim, proprio_dim, normalization or p.normalization)
        is None
    ]


class PlatformMismatch(UserError):
    """A run OpenVLA-OFT would decode with other constants than it was trained with."""


def oft_platform(
    robot: str | None,
    chunk: int,
    action_dim: int,
    proprio_dim: int,
    normalization: str,
    masks: Sequence[Sequence[bool]] = (),
) -> Platform:
    """The platform OFT must run a policy under: the run's recorded robot, or else the one
    platform its values match. PlatformMismatch, one line naming what differs and the fix,
    when OFT would decode it differently under every platform, or when one of `masks` (the
    action masks of the run's datasets) is not the platform's."""
    if robot is not None:
        target = platform(robot)
        wrong = decode_mismatch(target, chunk, action_dim, proprio_dim, normalization)
        if wrong:
            raise PlatformMismatch(
                f"OpenVLA-OFT would decode this {robot} run wrongly: {wrong}; train on a set "
                f"converted with --robot {robot} without overriding those options"
            )
    else:
        found = matching_platforms(chunk, action_dim, proprio_dim, normalization)
        if not found:
            values = (chunk, action_dim, proprio_dim, normalization)
            closest = min(PLATFORMS.values(), key=lambda p: len(_differences(p, *values)))
            wrong = decode_mismatch(closest, chunk, action_dim, proprio_dim, normalization)
            raise PlatformMismatch(
                f"OpenVLA-OFT would decode this run wrongly under every platform (closest, "
                f"{closest.name}: {wrong}); convert with --robot libero, aloha or bridge and "
                "train on that set"
            )
        target = found[0]
    for mask in masks:
        wrong = mask_mismatch(target, mask)
        if wrong:
            raise PlatformMismatch(wrong)
    return target


def mask_mismatch(target: Platform, mask: Sequence[bool]) -> str | None:
    """One line saying how an action mask differs from the one OFT's pipeline gives
    `target`, and the conversion option that makes it OFT's (None: it does not differ)."""
    if [bool(m) for m in mask] == target.mask:
        return None
    if target.no_normalize_dims:
        dims = ",".join(str(d) for d in target.no_normalize_dims)
        fix = f"with --no-normalize-dims {dims} (or --robot {target.name})"
    else:
        fix = f"without --no-normalize-dims (or with --robot {target.name})"
    return (
        f"unnormalized action dims: OpenVLA-OFT's {target.name} {_raw_dims(target.mask)}, this "
        f"run {_raw_dims(mask)} (OFT's fine-tuning normalizes with its own, so it would teach "
        f"the head other targets); convert {fix} and train on that set"
    )


def _raw_dims(mask: Sequence[bool]) -> str:
    return ",".join(str(d) for d, normalized in enumerate(mask) if not normalized) or "none"
