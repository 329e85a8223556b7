"""Instructions given beside the episodes: `--instruction` text or mapping file, `instruction.txt`.

For episodes that carry no language of their own (ALOHA, robomimic), each gets, in order:
the most specific entry of an `--instruction` mapping file (JSON or YAML, episode files or
folders, globs allowed) that matches it; else the nearest `instruction.txt` in its folder
or a folder above it (up to the input folder); else `--instruction` given as text.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from common.errors import ConfigError
from pipeline.inputs.layout import MAX_INSTRUCTION_CHARS

FOLDER_FILE = "instruction.txt"
MAPPING_SUFFIXES = (".json", ".yaml", ".yml")


def _literal_length(pattern: str) -> int:
    """How specific a pattern is: its characters that are not wildcards."""
    return sum(ch not in "*?[]" for ch in pattern)


def _check_text(text: object, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: an instruction must be a non-empty string")
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise ConfigError(
            f"{where}: an instruction has {len(text)} characters, "
            f"over the limit of {MAX_INSTRUCTION_CHARS}"
        )
    return text.strip()


def read_mapping(path: Path) -> list[tuple[str, str]]:
    """(pattern, instruction) pairs of a JSON or YAML mapping file, in the file's order."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--instruction {path}: cannot read it ({e})") from e
    try:
        if path.suffix == ".json":
            content = json.loads(text)
        else:
            import yaml

            content = yaml.safe_load(text)
    except Exception as e:  # each parser has its own error class; all mean "not this format"
        kind = "JSON" if path.suffix == ".json" else "YAML"
        reason = " ".join(str(e).split())
        raise ConfigError(f"--instruction {path}: not valid {kind} ({reason})") from None
    if not isinstance(content, dict) or not content:
        raise ConfigError(
            f"--instruction {path}: expected a mapping of episode files or folders to instructions"
        )
    pairs = []
    for pattern, instruction in content.items():
        where = f"--instruction {path}, entry {pattern!r}"
        if not isinstance(pattern, str) or not pattern.strip("/ "):
            raise ConfigError(f"{where}: a key must name episode files or folders")
        pairs.append((pattern.strip().strip("/"), _check_text(instruction, where)))
    return pairs


@dataclass
class Instructions:
    """Which instruction each episode gets from outside its file (None: none given)."""

    root: Path
    text: str | None = None  # --instruction as text
    mapping: list[tuple[str, str]] = field(default_factory=list)
    folder_files: dict[str, str] = field(default_factory=dict)  # folder (posix, "" = root) -> text

    @property
    def any(self) -> bool:
        return bool(self.text or self.mapping or self.folder_files)

    def for_episode(self, relative: str) -> str | None:
        """The instruction for the episode file at `relative` (posix, under root)."""
        path = PurePosixPath(relative.split("#", 1)[0])
        folders = [p.as_posix() for p in path.parents if p.as_posix() != "."]
        best, best_score = None, -1
        for pattern, instruction in self.mapping:
            if any(fnmatch.fnmatchcase(c, pattern) for c in [path.as_posix(), *folders]):
                score = _literal_length(pattern)
                if score > best_score:
                    best, best_score = instruction, score
        if best is not None:
            return best
        for folder in [*folders, ""]:
            if folder in self.folder_files:
                return self.folder_files[folder]
        return self.text


def load_instructions(root: Path, given: str | None, episode_files: list[str]) -> Instructions:
    """`--instruction` (text or a mapping file) and the `instruction.txt` files above episodes."""
    root = Path(root)
    found = Instructions(root)
    if given is not None:
        path = Path(given)
        if path.suffix.lower() in MAPPING_SUFFIXES and path.is_file():
            found.mapping = read_mapping(path)
        else:
            found.text = _check_text(given, "--instruction")
    folders = {""}
    for relative in episode_files:
        folders |= {p.as_posix() for p in PurePosixPath(relative).parents if p.as_posix() != "."}
    for folder in sorted(folders):
        candidate = root / folder / FOLDER_FILE
        if candidate.is_file():
            try:
                text = candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"{candidate}: cannot read it ({e})") from e
            found.folder_files[folder] = _check_text(text, str(candidate))
    return found
