"""Camera names: a file's own names, the canonical names they map to, and `--cameras` choices.

A camera has its own name in the file (`cam_high`, `top`, `agentview_rgb`) and a name in
the set. Known own names map to the canonical ones (`head`, `low`, `left_wrist`,
`right_wrist`); any other keeps its own name (made safe for tar member names). `--cameras`
chooses by either name and renames with `own:set` (`top:head`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from common.errors import UserError
from shards.format import CAMERAS

# A set camera name becomes part of a tar member name (`{key}.{camera}.jpg`): webdataset splits
# at the first dot and lower-cases fields, so only lower-case letters, digits and `_`.
_SET_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_UNSAFE = re.compile(r"[^a-z0-9_]+")


class CameraError(UserError, ValueError):
    """A `--cameras` value that cannot work; the message names the option."""


def safe_name(own: str) -> str:
    """A file's own camera name as a set camera name: lower-case, `_` for anything else."""
    name = _UNSAFE.sub("_", own.lower()).strip("_")
    return name or "camera"


def canonical_order(names: Iterable[str]) -> tuple[str, ...]:
    """Canonical cameras first in their fixed order, then the rest alphabetically."""
    names = set(names)
    return (*(c for c in CAMERAS if c in names), *sorted(names - set(CAMERAS)))


@dataclass(frozen=True)
class CameraChoice:
    """What `--cameras` asked for: set names in order, and own -> set renames."""

    wanted: tuple[str, ...]  # each entry's name as given before any `:` (own or set name)
    renamed: tuple[tuple[str, str], ...] = field(default=())  # (own or set name, new set name)

    @property
    def rename(self) -> dict[str, str]:
        return dict(self.renamed)


def parse_cameras(items: Iterable[str]) -> CameraChoice:
    """`("top:head", "left_wrist")` -> the choice; refuses empty, unsafe or repeated names."""
    wanted, renamed = [], []
    for item in items:
        source, _, target = (part.strip() for part in item.partition(":"))
        if not source or (":" in item and not target):
            raise CameraError(f"--cameras: {item!r} needs a name on each side of ':'")
        if target:
            if not _SET_NAME.match(target):
                raise CameraError(
                    f"--cameras: {target!r} cannot name a camera in a set; use lower-case "
                    "letters, digits and '_'"
                )
            renamed.append((source, target))
        wanted.append(source)
    if not wanted:
        raise CameraError("--cameras: name at least one camera")
    choice = CameraChoice(tuple(wanted), tuple(renamed))
    finals = [choice.rename.get(w, w) for w in wanted]
    twice = sorted({n for n in finals if finals.count(n) > 1})
    if twice:
        raise CameraError(f"--cameras: {', '.join(twice)} is named twice")
    return choice


def set_names(own: Iterable[str], known: Mapping[str, str], rename: Mapping[str, str]) -> dict:
    """Set name -> own name for a file's cameras.

    A rename may name the camera by its own name or by the set name it would get; it wins
    over the known mapping, and a camera whose set name it takes keeps its own name.
    """
    default = {o: known.get(o, safe_name(o)) for o in own}
    final = {}
    for o, name in default.items():
        final[o] = rename.get(o, rename.get(name, name))
    taken = {final[o] for o in final if o in rename or default[o] in rename}
    for o in final:
        if final[o] in taken and o not in rename and default[o] not in rename:
            final[o] = safe_name(o)
    return {name: o for o, name in final.items()}


def chosen_names(choice: CameraChoice, known: Mapping[str, str]) -> tuple[str, ...]:
    """The set names a choice gives in a layout whose known own names are `known`."""
    rename = choice.rename
    return tuple(rename.get(w, known.get(w, w)) for w in choice.wanted)
