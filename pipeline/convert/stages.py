"""`vla-data convert`: the conversion as one list of stages, each a function of its own module.

    1. find     find.py    config -> Listing: the layout, its episodes, cameras, instructions
    2. probe    probe.py   Listing -> Plan: every episode checked in the workers; widths,
                           cameras, keys and the train/val split decided (decide.py)
    3. encode   encode.py  Plan -> Plan: each good episode's samples as tar bytes in a spool
                           file, one episode per worker
    4. shards   write.py   Plan -> Shards: a seeded permutation of each split's samples,
                           copied from the spools into `{split}-NNNNNN.tar`
    5. stats    write.py   Plan -> stats.json, then manifest.json last
    6. publish  output.py  the staging folder renamed into place

Everything lands in a hidden staging folder beside the target that is renamed into place
only when complete. The config flows down from here into each stage; none calls back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.errors import UserError
from pipeline.config import ConvertConfig, PlanConfig
from pipeline.convert.decide import assign_split
from pipeline.convert.encode import encode_episodes
from pipeline.convert.find import find_episodes
from pipeline.convert.output import check_target, discard, publish, staging_dir
from pipeline.convert.plan import Plan
from pipeline.convert.probe import probe_and_split
from pipeline.convert.workers import WorkerPool
from pipeline.convert.write import record_manifest, write_set_stats, write_shards
from shards.manifest import Manifest


class ConvertError(UserError):
    """The conversion must stop; the message is for the user."""


@dataclass
class ConvertSummary:
    shards_dir: Path
    manifest: Manifest
    skipped: list[tuple[str, str]]  # (relative path, reason)
    decisions: list[str] = field(default_factory=list)  # choices that left something out


def convert(config: ConvertConfig) -> ConvertSummary:
    target = check_target(config.shards_dir, config.overwrite, [config.episodes_dir])
    staging = None
    try:
        with WorkerPool(config.workers) as pool:
            listing = find_episodes(config)  # 1
            plan = probe_and_split(listing, config, pool)  # 2
            _check_usable(plan, config)
            staging = staging_dir(target)
            spool = staging / "spool"
            spool.mkdir()
            plan = encode_episodes(plan, config, spool, pool)  # 3
        if config.strict and plan.skipped():
            raise ConvertError(_strict_failure(plan))
        # The split is over the episodes that made it; this only moves anything when an
        # episode failed while encoding, and keeps a merge of parts equal to one conversion.
        assign_split(plan.probes, config)
        shards = write_shards(plan, config, staging)  # 4
        discard(spool)
        write_set_stats(plan, config, staging)  # 5
        manifest = record_manifest(plan, config, shards, staging)
        publish(staging, target, config.overwrite)  # 6
    finally:
        if staging is not None:
            discard(staging)  # a no-op once published; on error or Ctrl-C nothing half-made stays
    skipped = [(p.relative, p.reason) for p in plan.skipped()]
    return ConvertSummary(config.shards_dir, manifest, skipped, plan.decisions)


def plan_episodes(config: PlanConfig) -> Plan:
    """Stages 1 and 2 alone, in a pool of their own: what `vla-data stats EPISODES_DIR` reads."""
    with WorkerPool(config.workers) as pool:
        return probe_and_split(find_episodes(config), config, pool)


def _check_usable(plan: Plan, config: ConvertConfig) -> None:
    """Stop before any frame is encoded when nothing, or (--strict) not everything, can go in."""
    if not plan.good():
        raise ConvertError(_no_good_episodes(plan, config))
    if config.strict and (plan.skipped() or plan.decisions):
        raise ConvertError(_strict_failure(plan))


def _no_good_episodes(plan: Plan, config: ConvertConfig) -> str:
    if not plan.probes:
        return f"{config.episodes_dir}: no *.hdf5 episodes found"
    first = plan.probes[0]
    return (
        f"{config.episodes_dir}: none of {len(plan.probes)} episodes is usable "
        f"(e.g. {first.relative}: {first.reason})"
    )


def _strict_failure(plan: Plan) -> str:
    bad = plan.skipped()
    if not bad:
        return f"--strict: {'; '.join(plan.decisions)}; nothing written"
    lines = [f"{p.relative}: {p.reason}" for p in bad[:5]]
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    return f"--strict: {len(bad)} bad episode(s), nothing written{more}:\n  " + "\n  ".join(lines)
