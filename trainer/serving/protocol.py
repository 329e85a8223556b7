"""OpenVLA-OFT's /act wire format: request bodies -> checked observations, chunks -> answers.

Arrays travel as json_numpy writes them: {"__numpy__": base64 of the raw bytes, "dtype":
numpy's descr, "shape": [...]}. Every size is checked from that header and the base64
length before anything is decoded, so a hostile body costs no more memory than its text.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_BODY_BYTES = 64 * 2**20  # four 1080p cameras as base64 fit; a stray upload does not
MAX_IMAGE_SIDE = 4096
MAX_INSTRUCTION_CHARS = 1000  # OFT's instructions are one sentence; the model reads tokens
PRIMARY = "full_image"  # OFT's clients' key for the primary camera
WRIST = "wrist"  # every key containing it is one more camera, in body order


class BadRequest(Exception):
    """A request the server refuses: an HTTP status and a one-line reason for the client."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Inputs:
    """What the loaded policy takes from each request."""

    cameras: tuple[str, ...]  # the run's cameras, primary first
    proprio_dim: int  # 0: the state, if sent, is ignored (as OFT's server does)


@dataclass
class Observation:
    images: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8
    instruction: str
    state: np.ndarray | None  # raw, in the robot's units


def check_length(declared: str | None) -> None:
    """Refuse a body by its Content-Length header before reading it."""
    if declared is None:
        return
    if not declared.isdigit():
        raise BadRequest(400, f"Content-Length {declared[:40]!r} is not a byte count")
    if int(declared) > MAX_BODY_BYTES:
        raise BadRequest(
            413, f"body of {int(declared)} bytes; the server takes up to {MAX_BODY_BYTES} bytes"
        )


def parse_body(body: bytes) -> tuple[dict[str, Any], bool]:
    """JSON body -> (observation dict, whether it came double-encoded as {"encoded": str})."""
    payload = _json(body, "the body")
    if isinstance(payload, dict) and "encoded" in payload:
        if len(payload) != 1 or not isinstance(payload["encoded"], str):
            raise BadRequest(400, 'an "encoded" body holds one key, the observation as a string')
        return _object(_json(payload["encoded"], '"encoded"'), '"encoded"'), True
    return _object(payload, "the body"), False


def read_observation(payload: dict[str, Any], inputs: Inputs) -> Observation:
    """OFT's observation keys -> the run's cameras, instruction and raw state, all checked."""
    instruction = payload.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise BadRequest(422, '"instruction" must be a non-empty string')
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise BadRequest(
            422,
            f'"instruction" has {len(instruction)} characters; the server '
            f"takes up to {MAX_INSTRUCTION_CHARS}",
        )
    keys = camera_keys(payload, inputs.cameras)
    images = {camera: decode_image(payload[key], key) for camera, key in keys.items()}
    state = None
    if inputs.proprio_dim:
        if "state" not in payload:
            raise BadRequest(
                422,
                f'no "state": the policy takes the robot state, '
                f"{inputs.proprio_dim} values in the robot's units",
            )
        state = decode_state(payload["state"], inputs.proprio_dim)
    return Observation(images, instruction, state)


def camera_keys(payload: dict[str, Any], cameras: tuple[str, ...]) -> dict[str, str]:
    """Camera name -> body key: full_image is the primary, then every *wrist* key in body order.

    A one-camera policy ignores wrist images, as OFT's server does with one image in input.
    """
    wrists = [key for key in payload if WRIST in key]
    wanted = f"{PRIMARY} and {len(cameras) - 1} wrist image(s) for cameras {', '.join(cameras)}"
    if PRIMARY not in payload:
        raise BadRequest(422, f'no "{PRIMARY}": the policy takes {wanted}')
    if len(cameras) > 1 and len(wrists) != len(cameras) - 1:
        sent = ", ".join(wrists) or "none"
        raise BadRequest(422, f"{len(wrists)} wrist image(s) ({sent}); the policy takes {wanted}")
    keys = [PRIMARY, *wrists][: len(cameras)]
    return dict(zip(cameras, keys, strict=True))


def decode_image(value: Any, key: str) -> np.ndarray:
    dtype, shape = array_header(value, key)
    if dtype != np.uint8 or len(shape) != 3 or shape[2] != 3:
        raise BadRequest(422, f'"{key}" is {dtype} {tuple(shape)}; images are RGB uint8 (H, W, 3)')
    if min(shape[:2]) < 1 or max(shape[:2]) > MAX_IMAGE_SIDE:
        raise BadRequest(
            413 if max(shape[:2]) > MAX_IMAGE_SIDE else 422,
            f'"{key}" is {shape[0]}x{shape[1]}; the server takes images of 1 to '
            f"{MAX_IMAGE_SIDE} pixels a side",
        )
    return array_data(value, key, dtype, shape)


def decode_state(value: Any, width: int) -> np.ndarray:
    """A json_numpy array (or a plain list of numbers) of `width` values -> float32."""
    if isinstance(value, list):
        if len(value) != width or not all(_is_number(v) for v in value):
            raise BadRequest(422, f'"state" must be {width} numbers (the robot state)')
        try:
            state = np.asarray(value, dtype=np.float32)
        except OverflowError:  # an integer past float's range; the finite check says so
            state = np.full(width, np.inf, dtype=np.float32)
    else:
        dtype, shape = array_header(value, "state")
        if len(shape) != 1 or shape[0] != width:
            raise BadRequest(
                422,
                f'"state" is {dtype} {tuple(shape)}; the policy takes {width} '
                "numbers (the robot state in its own units)",
            )
        state = array_data(value, "state", dtype, shape).astype(np.float32)
    if not np.isfinite(state).all():
        raise BadRequest(422, '"state" holds NaN or infinite values')
    return state


def array_header(value: Any, key: str) -> tuple[np.dtype, list[int]]:
    """A json_numpy header's dtype and shape, checked; nothing decoded yet."""
    if not isinstance(value, dict) or not isinstance(value.get("__numpy__"), str):
        raise BadRequest(
            422, f'"{key}" must be a json_numpy array ({{"__numpy__": base64, "dtype", "shape"}})'
        )
    descr, shape = value.get("dtype"), value.get("shape")
    try:
        dtype = np.dtype(descr) if isinstance(descr, str) else None
    except (TypeError, ValueError, SyntaxError):  # numpy's parser, given any string
        dtype = None
    if dtype is None or dtype.kind not in "iuf":
        raise BadRequest(422, f'"{key}" has dtype {str(descr)[:40]!r}; numbers only')
    if (
        not isinstance(shape, list)
        or len(shape) > 4
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise BadRequest(422, f'"{key}" has shape {str(shape)[:40]}; a list of sizes is expected')
    return dtype, shape


def array_data(value: dict[str, Any], key: str, dtype: np.dtype, shape: list[int]) -> np.ndarray:
    """Decode a checked header's bytes, once their base64 length matches shape and dtype."""
    text = value["__numpy__"]
    size = math.prod(shape) * dtype.itemsize
    if len(text) != 4 * math.ceil(size / 3):
        raise BadRequest(
            422,
            f'"{key}" carries {len(text)} base64 characters; {dtype} '
            f"{tuple(shape)} takes {4 * math.ceil(size / 3)}",
        )
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise BadRequest(422, f'"{key}" is not valid base64') from None
    return np.frombuffer(raw, dtype).reshape(shape)


def encode_actions(chunk: np.ndarray, double_encoded: bool) -> bytes:
    """(chunk, D) actions -> OFT's answer: a JSON list of json_numpy float64 (D,) arrays,
    itself JSON-encoded as a string when the request was."""
    rows = np.ascontiguousarray(chunk, dtype="<f8")
    answer = json.dumps([_json_numpy(row) for row in rows])
    return (json.dumps(answer) if double_encoded else answer).encode()


def _json_numpy(array: np.ndarray) -> dict[str, Any]:
    encoded = base64.b64encode(array.tobytes()).decode("ascii")
    return {"__numpy__": encoded, "dtype": array.dtype.str, "shape": list(array.shape)}


def _json(text: bytes | str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise BadRequest(400, f"{what} is not JSON ({reason})") from None


def _object(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BadRequest(400, f"{what} must be a JSON object of observation keys")
    return payload


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
