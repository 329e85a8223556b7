"""Scale-out conversion on a Ray cluster: one `convert --part i/n` task per part, then `merge`.

    python -m pipeline.ray_convert EPISODES_DIR SHARDS_DIR --parts 16 [--address auto] [...]

Every node must see EPISODES_DIR and a shared scratch folder at the same paths (NFS,
Lustre, a mounted bucket). Each task is an ordinary one-machine conversion of its part,
so a failed task is simply re-run; the merge equals a one-machine conversion.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from pipeline.config import ConvertConfig, parse_val_episodes
from pipeline.convert import ConvertSummary, convert
from pipeline.merge import MergeConfig, merge


def part_configs(config: ConvertConfig, parts: int, scratch: Path) -> list[ConvertConfig]:
    """The per-part conversions of `config`, each writing to its own folder under `scratch`."""
    return [
        dataclasses.replace(
            config, shards_dir=scratch / f"part-{i:04d}", part=(i, parts), progress=False
        )
        for i in range(1, parts + 1)
    ]


def ray_convert(
    config: ConvertConfig, parts: int, scratch: Path, cpus_per_task: int = 1
) -> ConvertSummary:
    """Convert the parts as Ray tasks (on the cluster `ray.init` joins), then merge them here."""
    import ray  # optional dependency: only the Ray path needs it

    remote = ray.remote(num_cpus=cpus_per_task)(convert)
    configs = part_configs(config, parts, scratch)
    ray.get([remote.remote(c) for c in configs])
    summary = merge(MergeConfig(tuple(c.shards_dir for c in configs), config.shards_dir,
                                overwrite=config.overwrite, progress=config.progress))  # fmt: skip
    remove_parts(scratch, [c.shards_dir for c in configs])
    return summary


def remove_parts(scratch: Path, parts: list[Path]) -> None:
    """Delete the part sets, and `scratch` only if they were all it held: it may be the user's."""
    for part in parts:
        shutil.rmtree(part)
    if not any(scratch.iterdir()):
        scratch.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("episodes_dir", type=Path)
    parser.add_argument("shards_dir", type=Path)
    parser.add_argument("--parts", type=int, required=True)
    parser.add_argument("--scratch", type=Path, help="shared folder for the parts")
    parser.add_argument("--address", default=None, help="Ray address (default: start locally)")
    parser.add_argument("--cpus-per-task", type=int, default=1)
    parser.add_argument("--val-episodes", default="0.05")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cameras", default=None)
    parser.add_argument("--instruction", default=None)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    import ray

    ray.init(address=args.address)
    config = ConvertConfig(
        episodes_dir=args.episodes_dir,
        shards_dir=args.shards_dir,
        val_episodes=parse_val_episodes(args.val_episodes),
        seed=args.seed,
        cameras=tuple(args.cameras.split(",")) if args.cameras else None,
        instruction=args.instruction,
        name=args.name,
        workers=args.cpus_per_task,
    )
    scratch = args.scratch or args.shards_dir.parent / f".{args.shards_dir.name}.parts"
    summary = ray_convert(config, args.parts, scratch, args.cpus_per_task)
    print(f"wrote {summary.shards_dir} ({len(summary.skipped)} episode(s) skipped)")


if __name__ == "__main__":
    main()
