"""Stage 1 of a conversion: which layout, which episodes, which cameras and instructions.

Nothing is opened here but the folder listing (and the files a layout reads to list its
episodes): every episode is looked at in stage 2 (probe.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import ConfigError
from pipeline.config import PlanConfig
from pipeline.inputs.cameras import CameraChoice, chosen_names, parse_cameras
from pipeline.inputs.instructions import Instructions, load_instructions
from pipeline.inputs.layout import EpisodeRef, InputLayout
from pipeline.inputs.registry import detect_layout, input_layout


@dataclass
class Listing:
    """The episodes a conversion (or its part) reads, and what is given about them."""

    layout: str
    refs: list[EpisodeRef]  # sorted by manifest path
    given: Instructions  # instructions from outside the files
    cameras: tuple[str, ...] | None  # set names `--cameras` asks for; None: the episodes decide
    rename: dict[str, str]  # own/set name -> set name (--cameras own:set)


def find_episodes(config: PlanConfig) -> Listing:
    """The layout (config's, else detected), its episodes (this part's, with --part), and
    the camera choice and instructions given for them."""
    root = config.episodes_dir
    name = config.layout or detect_layout(root)
    layout = input_layout(name)
    choice = parse_cameras(config.cameras) if config.cameras is not None else None
    wanted = _chosen(choice, layout)
    refs = layout.list_episodes(root)
    if config.part is not None:
        # Round-robin over the sorted list: parts are balanced and fixed by the folder alone.
        index, count = config.part
        refs = refs[index - 1 :: count]
    given = load_instructions(root, config.instruction, [r.relative for r in refs])
    if layout.needs_instruction and not given.any:
        raise ConfigError(
            f"{name} episodes carry no language instruction; pass --instruction TEXT (or a "
            "JSON/YAML file mapping episodes to instructions), or put an instruction.txt "
            "in their folder"
        )
    return Listing(name, refs, given, wanted, choice.rename if choice else {})


def _chosen(choice: CameraChoice | None, layout: InputLayout) -> tuple[str, ...] | None:
    """The set's camera names `--cameras` gives in this layout (None: decided by the episodes)."""
    if choice is None:
        return None
    names = chosen_names(choice, layout.known_cameras)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"--cameras: {', '.join(twice)} is named twice")
    return names
