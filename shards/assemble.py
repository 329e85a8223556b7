"""Raw samples -> one batch: decode into the batch's buffer, drop what fails, collate.

Stages: JPEGs decoded straight into the batch's image buffer, in parallel threads if asked
(Decoder) -> samples that fail are counted, logged now and then, and their place closed up
(PendingBatch.keep) -> a full batch collated with the stream's position and the events
met on the way (PendingBatch.emit).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from shards.buffers import BatchBuffers
from shards.draw import Events, Job
from shards.mixture import Mixture
from shards.samples import (
    RawSample,
    SampleError,
    check_members,
    sample_images,
    sample_labels,
    sample_proprio,
)
from shards.source import ShardSet, ShardSetError
from shards.stream import (
    WARN_FIRST_BAD,
    BadSamples,
    StreamConfig,
    StreamPosition,
    choose_instruction,
)

log = logging.getLogger(__name__)


class Decoder:
    """Checks and decodes samples into image slots; stops on a set beyond reading."""

    def __init__(self, mixture: Mixture, cfg: StreamConfig, events: Events) -> None:
        self.mixture, self.cfg, self.events = mixture, cfg, events
        self.bad = BadSamples([s.manifest.samples(cfg.split) for s in mixture.sets])
        # simplejpeg releases the GIL, so decode threads run in parallel with no IPC at all.
        self.pool = ThreadPoolExecutor(cfg.decode_threads) if cfg.decode_threads else None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def decode(self, jobs: list[Job], slots: list[np.ndarray]) -> list[dict[str, Any] | None]:
        """Each job decoded into its slot, in job order; None where a sample failed.

        With decode threads, the threads get the JPEGs only, one share of the batch each,
        while this thread decodes and checks the rest of every sample. A thread needs the
        GIL between two images; had it Python checks to run as well, it would wait for the
        GIL behind the others and this thread, and the cores would idle.
        """
        problems: list[SampleError | None] = []
        for raw, _, _ in jobs:
            try:
                check_members(raw, self.cfg.cameras)
                problems.append(None)
            except SampleError as exc:
                problems.append(exc)
        whole = [k for k, problem in enumerate(problems) if problem is None]

        def images(ks: list[int]) -> list[dict[str, Any] | SampleError]:
            return [self._images(jobs[k], slots[k]) for k in ks]

        if self.pool is None:
            decoded = images(whole)
            labels = [self._labels(jobs[k]) for k in whole]
        else:
            threads = min(self.cfg.decode_threads, len(whole))
            shares = [whole[t::threads] for t in range(threads)]
            pending = [self.pool.submit(images, share) for share in shares]
            labels = [self._labels(jobs[k]) for k in whole]
            by_job = {}
            for share, done in zip(shares, pending, strict=True):
                by_job.update(zip(share, done.result(), strict=True))
            decoded = [by_job[k] for k in whole]
        for k, image, label in zip(whole, decoded, labels, strict=True):
            # The image's problem first, as decode_sample reports a sample bad in both.
            problems[k] = image if isinstance(image, SampleError) else label
            if self.cfg.jpeg_bytes and not isinstance(problems[k], SampleError):
                problems[k] = {**label, "jpegs": list(image.values())}  # in camera order
        return [self._count(job, result) for job, result in zip(jobs, problems, strict=True)]

    def _images(self, job: Job, slot: np.ndarray | None) -> dict[str, Any] | SampleError:
        raw, index, _ = job
        manifest = self.mixture.sets[index].manifest
        try:
            return sample_images(raw, self.cfg.cameras, manifest, slot, not self.cfg.jpeg_bytes)
        except SampleError as exc:
            return exc

    def _labels(self, job: Job) -> dict[str, Any] | SampleError:
        raw, index, epoch = job
        try:
            return _labels(raw, self.mixture.sets[index], index, self.cfg, epoch)
        except SampleError as exc:
            return exc

    def _count(self, job: Job, result: dict[str, Any] | SampleError) -> dict[str, Any] | None:
        raw, index, _ = job
        if not isinstance(result, SampleError):
            self.bad.good(index)
            return result
        self.events.bad_samples.append(f"{raw['__shard__']}/{raw['__key__']}")
        if self.bad.bad(index):
            # Rate-limited: every bad sample is still counted in the batch's bad_samples.
            log.warning(
                "skipping a sample of %s: %s (%d bad samples so far in this stream; the first "
                "%d are logged, then the 10th, 100th, 1000th, ...)",
                raw["__shard__"], result, self.bad.total, WARN_FIRST_BAD,
            )  # fmt: skip
        if self.bad.hopeless(index):
            source = self.mixture.sets[index].source
            raise ShardSetError(
                f"{source}: {self.bad.in_a_row[index]} {self.cfg.split} samples in a row did "
                f"not decode, the last: {result}; check the set with `vla-data verify {source}`"
            )
        return None


class PendingBatch:
    """The samples decoded so far for the next batch, their images packed at its front.

    Without `buffers` the samples carry JPEG bytes instead (StreamConfig.jpeg_bytes), packed
    when the batch is emitted."""

    def __init__(self, size: int, buffers: BatchBuffers | None) -> None:
        self.size = size
        self.buffers = buffers
        self.samples: list[dict[str, Any]] = []
        self.images: torch.Tensor | None = None  # taken when the first sample is decoded
        self.slot: int | None = None

    @property
    def missing(self) -> int:
        return self.size - len(self.samples)

    def slots(self, n: int) -> list[np.ndarray | None]:
        """Where the next `n` samples' images go: the free rows of the batch's buffer."""
        if self.buffers is None or not n:
            return [None] * n
        if self.images is None:
            self.images, self.slot = self.buffers.take()
        start = len(self.samples)
        return list(self.images.numpy()[start : start + n])  # one view per row, no copies

    def keep(self, results: list[dict[str, Any] | None]) -> None:
        """Keep the samples that decoded; a failed one's row is filled by the next good one."""
        start = len(self.samples)
        for k, result in enumerate(results):
            if result is None:
                continue
            if start + k != len(self.samples) and self.images is not None:
                self.images[len(self.samples)] = self.images[start + k]
            self.samples.append(result)

    def emit(self, stream: int, position: StreamPosition, events: Events) -> dict[str, Any]:
        """The collated batch; this object starts on the next one."""
        samples = self.samples
        if self.images is not None:
            images = {"images": self.images[: len(samples)]}  # (B, N, H, W, 3), decoded in place
        else:
            images = pack_jpegs([s["jpegs"] for s in samples])
            images["jpeg_names"] = [s["name"] for s in samples]
        batch = {
            **images,
            # Small arrays stay numpy until the training process (BatchLoader): a tensor
            # crosses from a worker through its own shared-memory segment and file-descriptor
            # hand-over, which for a few hundred bytes costs far more than pickling them.
            "actions": np.stack([s["actions"] for s in samples]),
            "valid": np.array([s["valid"] for s in samples], dtype=np.int64),
            "instructions": [s["instruction"] for s in samples],
            "keys": [s["key"] for s in samples],
            "sets": np.array([s["set"] for s in samples], dtype=np.int64),  # index in mixture
            **(
                {"proprio": np.stack([s["proprio"] for s in samples])}
                if "proprio" in samples[0]
                else {}
            ),
            "stream": stream,
            "position": position,
            **events.drain(),
        }
        if self.slot is not None:
            batch["buffer"] = (self.buffers.worker, self.slot)  # handed back by BatchLoader
        self.samples, self.images, self.slot = [], None, None
        return batch


def pack_jpegs(jpegs: list[list[bytes]]) -> dict[str, Any]:
    """Each sample's camera JPEGs as one flat uint8 tensor and B*N+1 offsets into it, sample
    by sample, cameras in order.

    One tensor, not B*N: from a worker it crosses as one shared-memory segment (each tensor
    costs its own segment and file-descriptor hand-over), and it is pinned in one piece.
    """
    parts = [data for sample in jpegs for data in sample]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    flat = torch.empty(int(offsets[-1]), dtype=torch.uint8)
    if get_worker_info() is not None:  # made in shared memory once, not copied there later
        flat.share_memory_()
    flat.numpy()[:] = np.frombuffer(b"".join(parts), dtype=np.uint8)
    return {"jpegs": flat, "jpeg_offsets": offsets}


def _labels(
    raw: RawSample, shard_set: ShardSet, index: int, cfg: StreamConfig, epoch: int
) -> dict[str, Any]:
    """One sample's all but images, checked: what the batch collates beside them."""
    manifest = shard_set.manifest
    actions, meta = sample_labels(raw, manifest)
    key = raw["__key__"]
    labels = {
        "key": key,
        "actions": actions,
        "valid": meta["valid"],
        "instruction": choose_instruction(meta["instructions"], cfg.seed, epoch, key),
        "set": index,
    }
    if cfg.jpeg_bytes:
        # How bad_samples names it, should the device's decoder refuse what the header passed.
        labels["name"] = f"{raw['__shard__']}/{key}"
    if cfg.proprio:
        labels["proprio"] = sample_proprio(meta, manifest.proprio_dim, key)
    return labels
