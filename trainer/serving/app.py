"""The HTTP app: POST /act answers OpenVLA-OFT's deploy clients; GET /health describes it."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from trainer.inference.policy import Policy
from trainer.serving.protocol import (
    MAX_BODY_BYTES,
    PRIMARY,
    BadRequest,
    Inputs,
    check_length,
    encode_actions,
    parse_body,
    read_observation,
)

log = logging.getLogger(__name__)


class PolicyServer:
    """One loaded policy; requests are decoded concurrently, the model runs one at a time."""

    def __init__(self, policy: Policy, ckpt: Path):
        self.policy = policy
        self.ckpt = ckpt
        config = policy.net.config
        self.inputs = Inputs(policy.cameras, config.proprio_dim)
        # One forward at a time: concurrent ones would only split the same cores or GPU, and
        # each answer stays exactly what Policy.predict gives for that request alone.
        self.lock = threading.Lock()

    def answer(self, body: bytes) -> bytes:
        """A request body -> the answer's bytes; BadRequest for anything the client got wrong."""
        payload, double_encoded = parse_body(body)
        observation = read_observation(payload, self.inputs)
        with self.lock:
            chunk = self.policy.predict(
                observation.images, observation.instruction, observation.state
            )
        return encode_actions(chunk, double_encoded)

    def health(self) -> dict[str, Any]:
        config = self.policy.net.config
        wrists = [
            f"{camera} <- wrist image {i}" for i, camera in enumerate(self.inputs.cameras[1:])
        ]
        return {
            "status": "ok",
            "checkpoint": str(self.ckpt),
            "model": config.base,
            "cameras": list(self.inputs.cameras),
            "request_images": [f"{self.inputs.cameras[0]} <- {PRIMARY}", *wrists],
            "chunk": config.chunk,
            "action_dim": config.action_dim,
            "proprio": config.proprio_dim,
            "statistics": self.policy.dataset,
            "normalization": self.policy.run.normalization,
            "device": str(self.policy.device),
        }


def create_app(server: PolicyServer) -> FastAPI:
    app = FastAPI(title="vla-train serve", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/act")
    async def act(request: Request) -> Response:
        body = await read_body(request)
        # Decoding and the model run in worker threads: the event loop keeps accepting.
        answer = await run_in_threadpool(server.answer, body)
        return Response(answer, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return server.health()

    @app.exception_handler(BadRequest)
    async def refuse(request: Request, exc: BadRequest) -> JSONResponse:
        log.info("refused %s %s: %s", request.method, request.url.path, exc.reason)
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def fail(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server's log (the middleware re-raises), never to clients.
        return JSONResponse({"detail": "internal error; see the server's log"}, status_code=500)

    return app


async def read_body(request: Request) -> bytes:
    """The whole body, refused as soon as it is known to pass MAX_BODY_BYTES."""
    check_length(request.headers.get("content-length"))
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > MAX_BODY_BYTES:
            raise BadRequest(413, f"body over {MAX_BODY_BYTES} bytes; the server takes no more")
        parts.append(part)
    return b"".join(parts)
