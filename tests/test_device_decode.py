"""JPEGs decoded on the training device: the reader's JPEG-carrying batches, their checks,
torchvision's decode (on the CPU here) against the loader's, and `--decode auto`'s rule."""

from __future__ import annotations

import logging
import tarfile

import numpy as np
import pytest
import torch
from shard_fixtures import break_jpegs, no_sample_decodes
from torchvision.io import encode_jpeg as encode_jpeg_tv

from shards.format import JpegStorage, decode_jpeg, encode_jpeg, jpeg_shape, resize_square
from shards.reader import StreamConfig, StreamState, make_loader
from shards.source import ShardSetError, open_shard_set
from trainer.data.device_decode import decode_images, decoded_batch, device_decode_problem
from trainer.run.builder import build_run, open_data
from trainer.run.decode_choice import (
    SKIP_STEPS,
    WINDOW_STEPS,
    choose_decode,
    start_decode,
    window_steps,
)
from trainer.run.distributed import Dist
from trainer.run.loop import auto_decode_step
from trainer.run.train_config import TrainConfig

CPU = torch.device("cpu")


def _batches(shards, workers: int = 0, **options) -> list[dict]:
    cfg = StreamConfig(batch_size=5, finite=True, workers=workers, **options)
    return list(make_loader(open_shard_set(shards), cfg))


@pytest.mark.parametrize("workers", [0, 2])
def test_jpeg_batches_decoded_by_torchvision_equal_the_loaders_batches(toy_shards, workers):
    decoded = _batches(toy_shards, workers)
    carried = _batches(toy_shards, workers, jpeg_bytes=True)
    assert "images" not in carried[0] and carried[0]["jpegs"].dtype == torch.uint8
    assert len(carried[0]["jpeg_offsets"]) == 5 * 2 + 1  # two cameras a sample
    for a, b in zip(decoded, carried, strict=True):
        b = decoded_batch(b, CPU)
        assert b["keys"] == a["keys"] and b["position"] == a["position"]
        assert b["images"].shape == a["images"].shape and b["images"].dtype == torch.uint8
        assert torch.equal(b["images"], a["images"])
        assert torch.equal(b["actions"], a["actions"])


@pytest.mark.parametrize("subsampling", ["420", "444"])
def test_torchvision_and_simplejpeg_give_the_same_pixels_on_textured_frames(subsampling):
    # The toy frames are flat colours; camera-like texture exercises the IDCT and the chroma
    # upsampling, where decoders could differ. Both are libjpeg-turbo with its defaults.
    rng = np.random.default_rng(0)
    frames = [resize_square(rng.integers(0, 256, (28, 28, 3), np.uint8), 224) for _ in range(4)]
    jpegs = [encode_jpeg(f, JpegStorage(90, subsampling)) for f in frames]
    tensors = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
    images = decode_images(tensors, 2, CPU)  # 2 samples of 2 cameras
    expected = np.stack([decode_jpeg(j) for j in jpegs]).reshape(2, 2, 224, 224, 3)
    assert np.array_equal(images.numpy(), expected)


def test_jpeg_shape_reads_the_frame_header_and_refuses_what_is_no_whole_jpeg():
    image = np.zeros((48, 64, 3), np.uint8)
    data = encode_jpeg(image, JpegStorage(90))
    assert jpeg_shape(data) == (48, 64, 3)
    grey = encode_jpeg_tv(torch.zeros(1, 8, 16, dtype=torch.uint8)).numpy().tobytes()
    assert jpeg_shape(grey) == (8, 16, 3)  # decoded as RGB, as the loader decodes it
    for bad in (data[:-40], b"not a jpeg", data[:2] + data[-2:], b""):
        with pytest.raises(ValueError):
            jpeg_shape(bad)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_broken_jpeg_is_skipped_and_reported_as_the_loader_does(toy_shards, caplog):
    broken = break_jpegs(toy_shards / "train-000000.tar", 2)
    runs = {}
    for jpeg_bytes in (False, True):
        caplog.clear()
        state = StreamState()
        for batch in _batches(toy_shards, jpeg_bytes=jpeg_bytes):
            state.update(batch)
        runs[jpeg_bytes] = (state.bad_samples, [w.split(" (")[0] for w in _warnings(caplog)])
    assert runs[True] == runs[False]
    assert runs[True][0] == {f"train-000000.tar/{k}" for k in broken}
    assert runs[True][1][0].startswith("skipping a sample of train-000000.tar: sample ")
    assert "a member does not decode" in runs[True][1][0]


def test_jpegs_of_the_wrong_size_stop_the_set_with_the_loaders_message(toy_shards):
    shards = no_sample_decodes(toy_shards)
    messages = []
    for jpeg_bytes in (False, True):
        with pytest.raises(ShardSetError) as caught:
            _batches(shards, jpeg_bytes=jpeg_bytes)
        messages.append(str(caught.value))
    # The same stop, on the same sample; decoding into the batch's (112, 112, 3) buffer, the
    # loader hears of the size from the decoder's overflow, the header's check says it.
    head = f"{shards}: 64 train samples in a row did not decode, the last: sample "
    assert messages[0].startswith(head) and messages[1].startswith(head)
    assert messages[0].split(": ")[2] == messages[1].split(": ")[2]
    assert "head.jpg is (224, 224, 3), not (112, 112, 3)" in messages[1]


def _bogus_huffman_table(shard) -> str:
    """Break one sample's head.jpg past its frame header: its markers and size still pass."""
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".head.jpg"))
        data = tar.extractfile(member).read()
    table = data.index(b"\xff\xc4")  # the counts of codes of each length follow 5 bytes on
    with open(shard, "r+b") as f:
        f.seek(member.offset_data + table + 5)
        f.write(b"\xff" * 16)  # far more codes than a table can hold
    return member.name.split(".")[0]


def test_what_only_the_decoder_finds_is_dropped_and_counted_on_the_device(toy_shards, caplog):
    key = _bogus_huffman_table(toy_shards / "train-000000.tar")
    loader_bad = StreamState()
    for batch in _batches(toy_shards):
        loader_bad.update(batch)
    device_bad, keys = StreamState(), []
    for batch in _batches(toy_shards, jpeg_bytes=True):
        batch = decoded_batch(batch, CPU)
        device_bad.update(batch)
        keys += batch["keys"]
        assert len(batch["keys"]) == len(batch["actions"]) == len(batch["images"])
    assert device_bad.bad_samples == loader_bad.bad_samples == {f"train-000000.tar/{key}"}
    assert key not in keys and len(keys) == 4 * 16 - 1
    assert any(f"{key} does not decode on cpu" in w for w in _warnings(caplog))


def test_auto_decides_on_the_measured_data_wait():
    assert choose_decode(wait_s=0.4, step_s=10.0).where == "cpu"  # 4%: the CPU keeps up
    moved = choose_decode(wait_s=3.0, step_s=10.0)  # 30% of the steps spent waiting
    assert moved.where == "device" and "30.0%" in moved.reason
    assert choose_decode(wait_s=0.6, step_s=10.0, limit=0.1).where == "cpu"
    with pytest.raises(ValueError):
        choose_decode(1.0, 0.0)


def test_auto_starts_on_the_cpu_and_measures_only_where_the_device_can_decode():
    assert start_decode("auto", "training on the CPU, not a CUDA GPU").where == "cpu"
    assert start_decode("auto", None).where == "auto"  # decided after the window
    assert start_decode("device", None).where == "device"
    measured = [s for s in range(1, 100) if window_steps(10, s)]
    assert measured == list(range(10 + SKIP_STEPS + 1, 10 + SKIP_STEPS + WINDOW_STEPS + 1))


def test_the_cpu_is_no_device_to_decode_on():
    assert device_decode_problem(CPU) == "training on the CPU, not a CUDA GPU"


def test_auto_moving_to_the_device_mid_run_goes_on_with_the_next_batch(toy_shards, tmp_path):
    # What the loop does at the end of auto's window, on the CPU (torchvision decodes there):
    # the new loader starts where the handed-out batches end, so none is skipped or repeated,
    # and its pixels are the loader's.
    cfg = TrainConfig(
        shards=(str(toy_shards),), run_dir=tmp_path / "r", base="tiny", lora_rank=4,
        batch_size=4, workers=0, decode_threads=0, image_aug=False, device="cpu",
    )  # fmt: skip
    dist = Dist(0, 1, CPU)

    def run_batches():
        opened, mixture = open_data(cfg, dist)
        run = build_run(opened, dist, mixture)
        return run, run.train_batches()

    _, reference = run_batches()
    expected = [next(reference) for _ in range(5)]
    run, batches = run_batches()
    got = [next(batches) for _ in range(2)]
    window: list[float] = []
    said: list[str] = []
    record = {"samples_per_s": 8.0, "data_wait": 0.5}  # half of each step spent waiting
    for step in range(WINDOW_STEPS):
        batches = auto_decode_step(run, batches, record, window, said.append)
        assert run.cfg.decode == ("device" if step == WINDOW_STEPS - 1 else "auto")
    assert said == ["loader: JPEGs decoded on the GPU (nvJPEG) (auto: the steps waited on the "
                    "CPU's decode 50.0% of their time, over 5%)"]  # fmt: skip
    got += [next(batches) for _ in range(3)]
    assert [b.keys for b in got] == [b.keys for b in expected]
    assert all(
        torch.equal(a.pixel_values, b.pixel_values) for a, b in zip(got, expected, strict=True)
    )
