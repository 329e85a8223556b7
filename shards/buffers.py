"""Where a batch's JPEGs are decoded to: reused shared-memory buffers in loader workers.

A DataLoader worker's tensor reaches the training process through shared memory. A fresh
tensor per batch costs a new shared-memory segment, its zeroed pages and a file-descriptor
hand-over each time (about a third of a worker's time at batch 8). When batches go to a
GPU, the DataLoader copies each into pinned memory anyway, so each worker instead decodes
into a small ring of shared buffers that it made once; the training process maps each
buffer once, and once the pinned copy is made marks the buffer free in a flag table that
all workers share. (Were the DataLoader not to pin, the images are cloned out first; on CPU
that copy costs the training process more than the allocation costs a worker, so CPU
training keeps a new segment per batch: docs/BENCHMARKS.md.)
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import get_worker_info

# Buffers per worker: the DataLoader lets a worker run at most its prefetch factor (2)
# batches ahead of the training process, which frees a buffer as soon as it receives the
# batch; one more than that suffices, two more leave slack.
SLOTS = 4
_POLL_S = (0.0005, 0.01)  # first and longest wait between looks at a busy buffer's flag


class FreeFlags:
    """workers x SLOTS flags in shared memory: 1 while a batch in that buffer is in flight.

    Made in the training process before the workers start, so every process sees one table.
    """

    def __init__(self, workers: int) -> None:
        self.busy = torch.zeros((workers, SLOTS), dtype=torch.int32).share_memory_()

    def release(self, worker: int, slot: int) -> None:
        self.busy[worker, slot] = 0

    def reset(self, worker: int) -> None:
        """A worker's fresh start: batches of an earlier pass are never coming back."""
        self.busy[worker].zero_()


class BatchBuffers:
    """Image tensors for successive batches of one stream.

    In a worker (flags given): SLOTS shared buffers reused in turn, each taken only once the
    training process has freed it. Without flags: a new tensor per batch, in shared memory
    when in a worker (one made with np.stack would be copied there again on its way out),
    in ordinary memory in the training process (cheap to allocate, and the caller's to keep).
    """

    def __init__(self, shape: tuple[int, ...], flags: FreeFlags | None, worker: int) -> None:
        self.shape = shape
        self.flags = flags
        self.worker = worker
        self.ring: torch.Tensor | None = None
        self.next = 0

    def take(self) -> tuple[torch.Tensor, int | None]:
        """(images buffer, its slot; None when the buffer is the caller's to keep)."""
        if self.flags is None:
            images = torch.empty(self.shape, dtype=torch.uint8)
            return (images.share_memory_() if get_worker_info() else images), None
        if self.ring is None:
            self.ring = torch.empty((SLOTS, *self.shape), dtype=torch.uint8).share_memory_()
        slot, self.next = self.next, (self.next + 1) % SLOTS
        busy = self.flags.busy[self.worker]
        wait = _POLL_S[0]
        while int(busy[slot]):  # the batch that used it has not reached the trainer yet
            time.sleep(wait)
            wait = min(2 * wait, _POLL_S[1])
        busy[slot] = 1
        return self.ring[slot], slot
