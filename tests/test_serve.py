"""`vla-train serve` over real HTTP, asked exactly as OpenVLA-OFT's deploy clients ask."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import json_numpy
import numpy as np
import psutil
import pytest
import requests
from click.testing import CliRunner
from episode_fixtures import make_episodes, run_convert

from trainer.cli import main
from trainer.inference.policy import Policy
from trainer.run.loop import train
from trainer.run.train_config import TrainConfig
from trainer.serving.protocol import MAX_BODY_BYTES, Inputs, camera_keys, encode_actions

CAMERAS = ("head", "left_wrist", "right_wrist")  # ALOHA's: the client sends two wrist images
KEYS = ("full_image", "left_wrist_image", "right_wrist_image")  # what it sends them as
CHUNK, STATE_DIM = 4, 14
INSTRUCTION = "lift the cube"
START_WAIT_S = 120  # a bound on waiting for the server's first line, not a timing check


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """One step of the tiny model on ALOHA episodes with three cameras and the robot state."""
    root = tmp_path_factory.mktemp("serve")
    make_episodes(root / "episodes", layout="aloha", episodes=3, steps=10, cameras=CAMERAS)
    run_convert(root / "episodes", root / "shards", image_size=224, val_episodes=1,
                chunk=CHUNK, instruction=INSTRUCTION)  # fmt: skip
    cfg = TrainConfig(
        shards=str(root / "shards"), run_dir=root / "run", base="tiny", lora_rank=4,
        device="cpu", workers=0, batch_size=2, max_steps=1, save_every=1, cameras=CAMERAS,
        proprio=True,
    )  # fmt: skip
    train(cfg)
    return cfg.run_dir / "step-1"


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory):
    """`vla-train serve CKPT --port 0` in its own process; yields (base URL, its process)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [sys.executable, "-m", "trainer.cli", "serve", str(ckpt), "--port", "0",
               "--device", "cpu"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = _announced_url(process, log)
    yield url, process
    process.send_signal(signal.SIGINT)  # Ctrl-C: a clean shutdown and exit status 0
    assert process.wait(timeout=60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def _announced_url(process: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith("serving ") and "http://" in line:
                return line.split(" on ")[1].split()[0].removesuffix("/act")
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the server did not start:\n{log.read_text()}")


@pytest.fixture(scope="module")
def policy(ckpt) -> Policy:
    return Policy.load(ckpt, device="cpu")


@pytest.fixture
def oft_json():
    """json_numpy.patch() as OFT's clients call it, undone afterwards for the other tests."""
    saved = {name: getattr(json, name) for name in ("dumps", "loads", "dump", "load")}
    json_numpy.patch()
    yield
    for name, function in saved.items():
        setattr(json, name, function)


def _observation(seed: int = 0) -> dict:
    """run_aloha_eval.py's body: full_image, left and right wrist, raw qpos, instruction."""
    rng = np.random.default_rng(seed)
    return {
        "full_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "left_wrist_image": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),  # any size
        "right_wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "state": rng.normal(size=STATE_DIM),  # float64, as the robot reports it
        "instruction": INSTRUCTION,
    }


def _expected(policy: Policy, obs: dict) -> np.ndarray:
    images = {camera: obs[key] for camera, key in zip(CAMERAS, KEYS, strict=True)}
    return policy.predict(images, obs["instruction"], obs["state"])


def test_answers_oft_clients_with_policy_predicts_chunk(server, policy, oft_json):
    url, _ = server
    obs = _observation()
    actions = requests.post(f"{url}/act", json=obs).json()  # get_action_from_server
    assert isinstance(actions, list) and len(actions) == CHUNK
    assert all(a.dtype == np.float64 and a.shape == (STATE_DIM,) for a in actions)
    np.testing.assert_array_equal(np.stack(actions), _expected(policy, obs))
    assert len(actions[:25][0].tolist()) == STATE_DIM  # the client's open-loop slice and step
    # The raw state is normalized by the server: another state, another chunk.
    other = {**obs, "state": obs["state"] + 1.0}
    moved = np.stack(requests.post(f"{url}/act", json=other).json())
    np.testing.assert_array_equal(moved, _expected(policy, other))
    assert not np.array_equal(moved, np.stack(actions))


def test_answers_double_encoded_requests_double_encoded(server, policy, oft_json):
    url, _ = server
    obs = _observation(1)
    answer = requests.post(f"{url}/act", json={"encoded": json.dumps(obs)}).json()
    assert isinstance(answer, str)
    np.testing.assert_array_equal(np.stack(json.loads(answer)), _expected(policy, obs))


def test_concurrent_requests_each_get_their_own_chunk(server, policy, oft_json):
    url, _ = server
    observations = [_observation(seed) for seed in range(2, 6)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda o: requests.post(f"{url}/act", json=o).json(),
                                observations))  # fmt: skip
    for obs, answer in zip(observations, answers, strict=True):
        np.testing.assert_array_equal(np.stack(answer), _expected(policy, obs))


def test_health_describes_the_policy(server, ckpt):
    health = requests.get(f"{server[0]}/health").json()
    assert health["cameras"] == list(CAMERAS) and health["model"] == "tiny"
    assert (health["chunk"], health["action_dim"], health["proprio"]) == (CHUNK, 14, STATE_DIM)
    assert health["statistics"] == "episodes" and health["checkpoint"] == str(ckpt)


def _array_header(shape: list[int], data: bytes = b"\0\0\0", dtype: str = "|u1") -> dict:
    return {"__numpy__": base64.b64encode(data).decode(), "dtype": dtype, "shape": shape}


def _bad_bodies() -> list[tuple[str, bytes, int, str]]:
    """(name, body with arrays as json_numpy writes them, status, words of the reason)."""
    obs = _observation()

    def body(**changes) -> str:
        return json_numpy.dumps({k: v for k, v in {**obs, **changes}.items() if v is not None})

    bodies = [
        ("not json", "{'full_image': ", 400, "not JSON"),
        ("a list", "[1, 2]", 400, "JSON object"),
        ("no full_image", body(full_image=None), 422, 'no "full_image"'),
        ("missing camera", body(right_wrist_image=None), 422, "1 wrist image(s)"),
        ("float image", body(full_image=obs["full_image"].astype(np.float32)), 422, "uint8"),
        ("grey image", body(full_image=obs["full_image"][..., 0]), 422, "(H, W, 3)"),
        ("20000x20000", body(full_image=_array_header([20000, 20000, 3])), 413, "4096"),
        ("short data", body(full_image=_array_header([224, 224, 3])), 422, "base64"),
        ("object dtype", body(full_image=_array_header([1], b"\0" * 8, "|O")), 422, "dtype"),
        ("state width", body(state=np.zeros(7)), 422, "takes 14"),
        ("no state", body(state=None), 422, 'no "state"'),
        ("empty instruction", body(instruction="  "), 422, "instruction"),
        ("encoded and more", json_numpy.dumps({"encoded": body(), "x": 1}), 400, "one key"),
    ]
    return [(name, text.encode(), status, words) for name, text, status, words in bodies]


def _post_huge(url: str) -> tuple[int, str]:
    """A 200 MB body announced by Content-Length: refused after its first megabyte."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/act")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(200 * 2**20))
    connection.endheaders()
    try:
        connection.send(b"{" * 2**20)
        response = connection.getresponse()
        return response.status, json.loads(response.read())["detail"]
    finally:
        connection.close()


def _post_streamed(url: str) -> tuple[int, str]:
    """A body of no declared length (chunked): refused once it passes the cap."""
    pieces = (b" " * 2**20 for _ in range(MAX_BODY_BYTES // 2**20 + 8))
    response = requests.post(f"{url}/act", data=pieces)
    return response.status_code, response.json()["detail"]


def test_bad_requests_get_a_4xx_with_one_line_and_the_server_stays_up(server, policy, oft_json):
    url, process = server
    rss = []
    # Round 1 warms the allocator's pools and first-use paths, and the allocator's size moves
    # tens of MB up and back between rounds on a busy machine; a leak of what is refused grows
    # every round, by a body (up to 64 MB) a round, so the lower of the last two rounds shows it.
    for _ in range(4):
        for name, body, status, words in _bad_bodies():
            response = requests.post(f"{url}/act", data=body)
            detail = response.json()["detail"]
            assert (response.status_code, words in detail) == (status, True), (name, detail)
            assert "\n" not in detail and "Traceback" not in detail
        for post in (_post_huge, _post_streamed):
            status, detail = post(url)
            assert status == 413 and str(MAX_BODY_BYTES) in detail
        rss.append(psutil.Process(process.pid).memory_info().rss)
    grown = min(rss[2:]) - rss[1]
    assert grown < 32 * 2**20, f"server memory grew {rss} over identical bad requests"
    obs = _observation(7)
    good = requests.post(f"{url}/act", json=obs).json()
    np.testing.assert_array_equal(np.stack(good), _expected(policy, obs))


def test_answer_encoding_is_what_json_numpy_reads():
    chunk = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    for double in (False, True):
        text = encode_actions(chunk, double).decode()
        rows = json_numpy.loads(json.loads(text) if double else text)
        assert [r.dtype for r in rows] == [np.float64] * 2
        np.testing.assert_array_equal(np.stack(rows), chunk)


def test_cameras_follow_full_image_then_wrist_keys_in_body_order():
    body = {"right_wrist_image": 0, "full_image": 1, "left_wrist_image": 2, "state": 3}
    assert camera_keys(body, ("a", "b", "c")) == {
        "a": "full_image", "b": "right_wrist_image", "c": "left_wrist_image",
    }  # fmt: skip
    # A one-image policy ignores wrist images, as OFT's server does.
    assert camera_keys(body, ("a",)) == {"a": "full_image"}
    assert Inputs(("a",), 0).proprio_dim == 0


def test_serve_cli_errors_are_one_line(ckpt, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["serve", str(tmp_path / "nope"), "--port", "0"])
    assert missing.exit_code != 0 and "no such checkpoint folder" in missing.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = runner.invoke(main, ["serve", str(ckpt), "--port", port])
    assert result.exit_code != 0 and f"127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    wrong = runner.invoke(main, ["serve", str(ckpt), "--cameras", "head"])
    assert wrong.exit_code != 0 and "OpenVLA-OFT folders" in wrong.output


def test_serve_refuses_a_damaged_checkpoint_naming_the_file(ckpt, tmp_path):
    damaged = shutil.copytree(ckpt, tmp_path / "step-1")
    adapter = damaged / "adapter_model.safetensors"
    data = bytearray(adapter.read_bytes())
    data[-100] ^= 0xFF  # one flipped bit pattern inside the tensor data: still parses
    adapter.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["serve", str(damaged), "--port", "0", "--device", "cpu"])
    assert result.exit_code != 0 and f"{adapter}: damaged" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
