"""Stage 3 of a conversion: each good episode -> its samples as ready tar bytes in a spool
file, one episode per worker process.

Frames are read in blocks so memory stays bounded whatever the episode's length or
camera resolution; each sample's tar bytes are final, so the shard writer only copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DiskFull, disk_full
from pipeline.config import ConvertConfig
from pipeline.convert.oft_libero import open_episode
from pipeline.convert.plan import EncodeResult, Plan
from pipeline.convert.workers import WorkerPool
from pipeline.inputs.layout import EpisodeInfo, EpisodeRef, skip_reason
from shards.format import (
    ACTIONS_MEMBER,
    META_MEMBER,
    JpegStorage,
    camera_member,
    encode_actions,
    encode_jpeg,
    encode_meta,
    resize_square,
    sample_key,
)
from shards.writer import sample_tar_bytes

FRAME_BLOCK = 32  # frames per camera read at once: ~30 MB for 480x640 ALOHA frames


@dataclass(frozen=True)
class EncodeJob:
    ref: EpisodeRef
    layout: str
    instruction: str | None  # given from outside the file for this episode
    rename: dict[str, str]  # --cameras own:set renames
    key: str
    dataset: str
    cameras: tuple[str, ...]
    image_size: int
    jpeg: JpegStorage
    chunk: int
    spool: Path
    robot: str | None = None  # --robot: OpenVLA-OFT's conventions for that platform


def action_chunk(actions: np.ndarray, t: int, chunk: int) -> tuple[np.ndarray, int]:
    """actions[t : t+chunk], rows past the end repeating the last action; and the real row count."""
    rows = actions[t : t + chunk]
    valid = len(rows)
    if valid < chunk:
        rows = np.concatenate([rows, np.repeat(actions[-1:], chunk - valid, axis=0)])
    return rows.astype(np.float32), valid


def encode_episodes(plan: Plan, config: ConvertConfig, spool_dir: Path, pool: WorkerPool) -> Plan:
    """Encode every good episode into spool_dir in `pool`'s workers; returns the plan with each
    episode's samples located (`encoded`), and those that failed here skipped, saying why."""
    good = plan.good()
    jobs = [
        (
            EncodeJob(
                ref=EpisodeRef(p.path, p.relative, p.item),
                layout=plan.layout,
                instruction=p.instruction,
                rename=plan.rename,
                key=p.key,
                dataset=plan.dataset,
                cameras=plan.cameras,
                image_size=config.image_size,
                jpeg=config.jpeg,
                chunk=config.chunk,
                spool=spool_dir / f"{i:06d}.bin",
                robot=config.robot,
            ),
        )
        for i, p in enumerate(good)
    ]
    results = pool.run_ordered(
        encode_episode,
        jobs,
        "encoding samples",
        config.progress,
        units=lambda r: 0 if r.offsets is None else len(r.offsets),
        total=sum(p.info.steps for p in good),
        unit_name="samples",
    )
    for probe, result in zip(good, results, strict=True):
        probe.encoded = result
        if result.reason is not None:
            probe.reason = result.reason
    return plan


def encode_episode(job: EncodeJob) -> EncodeResult:
    """One episode's samples into job.spool (in a worker); a failure is its skip reason."""
    try:
        with open_episode(job.layout, job.ref, job.instruction, job.rename, job.robot) as episode:
            info = episode.info()
            offsets = np.zeros((info.steps, 2), dtype=np.int64)
            with open(job.spool, "wb") as spool:
                position = 0
                for start in range(0, info.steps, FRAME_BLOCK):
                    stop = min(start + FRAME_BLOCK, info.steps)
                    jpegs = {
                        cam: [
                            encode_jpeg(resize_square(f, job.image_size), job.jpeg)
                            for f in episode.frames(cam, start, stop)
                        ]
                        for cam in job.cameras
                    }
                    for t in range(start, stop):
                        data = _sample_bytes(job, info, t, {c: jpegs[c][t - start] for c in jpegs})
                        spool.write(data)
                        offsets[t] = (position, len(data))
                        position += len(data)
    except Exception as exc:  # any failure is this episode's alone (see skip_reason) ...
        if disk_full(exc):  # ... but a full disk is the output's, and would fail every one
            raise DiskFull.writing(job.spool.parents[2], exc) from None
        return EncodeResult(job.spool, None, skip_reason(exc, "encoding"))
    return EncodeResult(job.spool, offsets)


def _sample_bytes(job: EncodeJob, info: EpisodeInfo, t: int, jpegs: dict[str, bytes]) -> bytes:
    chunk, valid = action_chunk(info.actions, t, job.chunk)
    meta = {
        "episode": job.key,
        "t": t,
        "steps": info.steps,
        "valid": valid,
        "instructions": info.instructions,
        "unseen": info.unseen,
        "dataset": job.dataset,
    }
    if info.proprio is not None:
        meta["proprio"] = [float(v) for v in info.proprio[t]]
    members = {camera_member(c): jpegs[c] for c in job.cameras}
    members[ACTIONS_MEMBER] = encode_actions(chunk)
    members[META_MEMBER] = encode_meta(meta)
    return sample_tar_bytes(sample_key(job.key, t), members)
