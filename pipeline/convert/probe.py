"""Stage 2 of a conversion: look at every episode once (checksum, structure, actions, a frame
of each camera) in the workers, then decide widths, cameras, keys and the split."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.config import PlanConfig
from pipeline.convert.decide import (
    assign_keys,
    assign_split,
    check_no_normalize_dims,
    decide_cameras,
    decide_widths,
)
from pipeline.convert.find import Listing
from pipeline.convert.oft_libero import open_episode
from pipeline.convert.plan import EpisodeProbe, Plan
from pipeline.convert.workers import WorkerPool
from pipeline.inputs.layout import EpisodeError, EpisodeRef, skip_reason


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_file(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None  # the episode's probe says why it cannot be read


def probe_episode(
    ref: EpisodeRef,
    sha256: str | None,
    layout: str,
    cameras: tuple[str, ...] | None,
    instruction: str | None,
    rename: dict[str, str],
    robot: str | None = None,
) -> EpisodeProbe:
    """Check one episode (in a worker); whatever fails becomes its skip reason."""
    probe = EpisodeProbe(ref.path, ref.relative, sha256 or "", info=None, item=ref.item)
    probe.instruction = instruction
    try:
        if sha256 is None:
            file_sha256(ref.path)  # raises the OSError that says why
        with open_episode(layout, ref, instruction, rename, robot) as episode:
            probe.info = episode.info()
            episode.check_cameras(cameras if cameras is not None else probe.info.cameras)
            if not probe.info.instructions:
                raise EpisodeError("has no language instructions")
            if probe.info.steps == 0:
                raise EpisodeError("has no timesteps")
    except Exception as exc:  # any failure is this episode's alone: see skip_reason
        probe.reason = skip_reason(exc, "checking")
    return probe


def probe_and_split(listing: Listing, config: PlanConfig, pool: WorkerPool) -> Plan:
    """Probe every listed episode in `pool`'s workers, then decide; the plan of stage 2."""
    refs = listing.refs
    files = sorted({r.path for r in refs})
    hashes = pool.run_ordered(_hash_file, [(f,) for f in files], "hashing files", config.progress)
    sha = dict(zip(files, hashes, strict=True))
    given, rename = listing.given, listing.rename
    jobs = [
        (
            r,
            sha[r.path],
            listing.layout,
            listing.cameras,
            given.for_episode(r.relative),
            rename,
            config.robot,
        )
        for r in refs
    ]
    probes = pool.run_ordered(probe_episode, jobs, "checking episodes", config.progress)
    decisions = decide_widths(probes, config.action_dim)
    check_no_normalize_dims(probes, config.no_normalize_dims)
    cameras = listing.cameras
    if cameras is None:
        cameras, said = decide_cameras(probes, config.episodes_dir)
        decisions += said
    assign_keys(probes)
    assign_split(probes, config)
    return Plan(listing.layout, cameras, probes, decisions, listing.rename, listing.dataset)
