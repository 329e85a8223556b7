"""Shard sets streamed from a real HTTP server and a real S3-compatible server on loopback."""

from __future__ import annotations

import contextlib
import functools
import http.server
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from episode_fixtures import make_episodes, run_convert
from s3_fixtures import moto_s3, upload_folder

from pipeline.cli import main as vla_data
from shards import s3
from trainer.cli import main as vla_train


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("remote")
    make_episodes(root / "eps", episodes=4, steps=10)
    run_convert(root / "eps", root / "shards", val_episodes=1, image_size=224, shard_samples=8,
                cameras=("head", "left_wrist"))  # fmt: skip
    return root / "shards"


@pytest.fixture
def http_url(shard_set: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(shard_set))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def s3_url(shard_set: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """moto's standalone S3 server on loopback, configured the way users configure AWS."""
    boto3 = pytest.importorskip("boto3")
    with moto_s3() as endpoint:
        config = tmp_path / "aws-config"
        config.write_text(f"[default]\nregion = us-east-1\nendpoint_url = {endpoint}\n")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        s3._client.cache_clear()
        client = boto3.session.Session().client("s3")
        client.create_bucket(Bucket="team-a")
        upload_folder(client, shard_set, "team-a", "sets/demo")
        yield "s3://team-a/sets/demo/"
        s3._client.cache_clear()


@pytest.fixture(params=["http", "s3"])
def remote_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def test_stats_reads_a_remote_set(remote_url: str, shard_set: Path) -> None:
    result = CliRunner().invoke(vla_data, ["stats", remote_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads((shard_set / "stats.json").read_text())
    verify = CliRunner().invoke(vla_data, ["stats", remote_url, "--verify"])
    assert verify.exit_code == 1 and "vla-data verify" in verify.output


def test_verify_and_info_read_a_remote_set(remote_url: str, shard_set: Path) -> None:
    result = CliRunner().invoke(vla_data, ["verify", remote_url, "--workers", "1"])
    assert result.exit_code == 0, result.output
    shards = json.loads((shard_set / "manifest.json").read_text())["splits"]
    assert f"OK: {sum(len(s) for s in shards.values())} shards" in result.output
    info = CliRunner().invoke(vla_data, ["info", remote_url])
    assert info.exit_code == 0, info.output
    assert "3 episodes, 30 samples" in info.output  # train: 3 of 4 episodes x 10 steps


def test_loadtest_streams_a_remote_set(remote_url: str) -> None:
    args = ["loadtest", remote_url, "--workers", "1", "--batch-size", "4", "--samples", "16"]
    result = CliRunner().invoke(vla_train, args)
    assert result.exit_code == 0, result.output
    assert "samples/s" in result.output


def test_training_streams_from_s3(s3_url: str, tmp_path: Path) -> None:
    run = str(tmp_path / "run")
    args = ["--shards", s3_url, "--run-dir", run, "--base", "tiny", "--max-steps", "2",
            "--batch-size", "2", "--workers", "1", "--save-every", "2"]  # fmt: skip
    result = CliRunner().invoke(vla_train, args)
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_a_missing_remote_set_is_one_clear_line(s3_url: str, http_url: str) -> None:
    for url in (s3_url.replace("demo", "nothing"), http_url + "nothing/"):
        result = CliRunner().invoke(vla_data, ["info", url])
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert result.output.startswith("Error: ") and "manifest.json" in result.output


def test_a_changed_remote_shard_fails_verify(s3_url: str) -> None:
    import boto3

    client = boto3.session.Session().client("s3")
    client.put_object(Bucket="team-a", Key="sets/demo/train-000000.tar", Body=b"x")
    result = CliRunner().invoke(vla_data, ["verify", s3_url, "--workers", "1"])
    assert result.exit_code == 1
    assert "FAIL train-000000.tar" in result.output


class _FaultyHandler(http.server.BaseHTTPRequestHandler):
    """Serves files with Range support; `faults` says what the next requests of a path suffer."""

    protocol_version = "HTTP/1.1"
    root: Path
    faults: dict[str, list[str]]
    ranges: list[str]
    requests: list[str]

    def log_message(self, *args: object) -> None:
        pass

    def handle(self) -> None:
        # The client gives up on a stalled or dropped answer: that is the test, not an error.
        with contextlib.suppress(OSError):
            super().handle()

    def do_GET(self) -> None:
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if "Range" in self.headers:
            self.ranges.append(self.headers["Range"])
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
        self.requests.append(self.path)
        pending = self.faults.get(self.path, [])
        fault = pending.pop(0) if pending else None
        if fault == "stall":
            time.sleep(3)  # far past the client's read timeout
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        body = data[start:]
        if fault == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def faulty_http(shard_set: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    handler = type(
        "Handler",
        (_FaultyHandler,),
        {"root": shard_set, "faults": {}, "ranges": [], "requests": []},
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("VLA_HTTP_TIMEOUT_S", "0.5")
    monkeypatch.setenv("VLA_HTTP_BACKOFF_S", "0.01")
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/"
    yield handler
    server.shutdown()
    server.server_close()


def _read(url: str, name: str) -> bytes:
    from shards.source import open_shard_set

    with open_shard_set(url).open_shard(name) as stream:
        return stream.read()


def test_a_dropped_connection_resumes_where_it_stopped(faulty_http, shard_set: Path) -> None:
    faulty_http.faults["/train-000000.tar"] = ["drop", "drop"]
    assert (
        _read(faulty_http.url, "train-000000.tar") == (shard_set / "train-000000.tar").read_bytes()
    )
    assert len(faulty_http.ranges) == 2 and all(r.startswith("bytes=") for r in faulty_http.ranges)


def test_a_stalled_server_times_out_and_is_retried(faulty_http, shard_set: Path) -> None:
    faulty_http.faults["/train-000000.tar"] = ["stall"]
    assert (
        _read(faulty_http.url, "train-000000.tar") == (shard_set / "train-000000.tar").read_bytes()
    )
    # Had the client waited out the stall, the first answer would have served the shard whole.
    assert faulty_http.requests.count("/train-000000.tar") == 2


def test_a_server_that_keeps_stalling_is_given_up_after_the_retries(
    faulty_http, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLA_HTTP_RETRIES", "1")
    faulty_http.faults["/train-000000.tar"] = ["stall"] * 3
    with pytest.raises(OSError, match="train-000000.tar: cannot fetch"):
        _read(faulty_http.url, "train-000000.tar")
    assert faulty_http.requests.count("/train-000000.tar") == 2  # the first attempt and one retry


def test_a_shard_that_keeps_failing_is_a_bad_shard_and_the_rest_streams(faulty_http) -> None:
    from shards.reader import StreamConfig, make_loader
    from shards.source import open_shard_set

    faulty_http.faults["/train-000000.tar"] = ["drop"] * 20
    with pytest.raises(OSError, match="train-000000.tar"):
        _read(faulty_http.url, "train-000000.tar")
    faulty_http.faults["/train-000000.tar"] = ["drop"] * 20
    config = StreamConfig(cameras=("head", "left_wrist"), batch_size=4, shuffle_buffer=0)
    batches = itertools.islice(make_loader(open_shard_set(faulty_http.url), config), 6)
    bad, keys = [], []
    for batch in batches:  # the stream repeats epochs: one pass is 30 samples
        bad += batch["bad_shards"]
        keys += batch["keys"]
    assert bad == ["train-000000.tar"]
    assert len(keys) == 24  # the other shards all came through
