"""`vla-train serve`: load a checkpoint once, then answer /act over HTTP with uvicorn."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stats.normalize import NORMALIZATIONS
from trainer.inference.policy import Policy
from trainer.model.oft_files import OftOptions, is_oft_folder
from trainer.run.train_config import ConfigError

DEFAULT_PORT = 8777  # OFT's ALOHA client hard-codes http://{ip}:8777/act
# Connections (idle keep-alive ones included) past this get 503: each may hold a body of up
# to MAX_BODY_BYTES while it is decoded, so this bounds the server's memory.
MAX_CONNECTIONS = 32


@dataclass
class ServeConfig:
    """Which checkpoint to serve, and where."""

    ckpt: Path
    """A RUN_DIR/step-N folder, or an OpenVLA-OFT checkpoint folder."""
    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 reaches every interface (a trusted network only)."""
    port: int = DEFAULT_PORT
    """0: any free port (the one chosen is printed)."""
    device: str = "auto"
    base: str | None = None
    """Base to load the adapter onto; default the one the run trained on."""
    dataset: str | None = None
    """Stats entry to normalize the state and denormalize actions with; default the only one."""
    cameras: tuple[str, ...] = ()
    """OFT folders only: cameras in the order the run fed them, primary first."""
    normalization: str | None = None
    """OFT folders only; default OFT's for the action width."""

    def __post_init__(self) -> None:
        self.ckpt = Path(self.ckpt)
        self.cameras = tuple(self.cameras)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port}: ports run from 0 (any free one) to 65535")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError("--device must be auto, cpu or cuda")
        if self.normalization is not None and self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}")

    def oft_options(self) -> OftOptions | None:
        if is_oft_folder(self.ckpt):
            return OftOptions(cameras=self.cameras, normalization=self.normalization)
        if self.cameras or self.normalization:
            raise ConfigError(
                f"{self.ckpt}: --cameras and --normalization are for OpenVLA-OFT folders; "
                "a step-N folder records its own"
            )
        return None


def serve(cfg: ServeConfig, announce: Callable[[str], None] = print) -> None:
    """Serve until SIGINT or SIGTERM; `announce` gets the line saying where."""
    try:
        import uvicorn

        from trainer.serving.app import PolicyServer, create_app
    except ImportError as exc:
        raise ConfigError(
            f"vla-train serve needs the serve extra ({exc.name} is missing): "
            "pip install 'vla-shards[serve]'"
        ) from None
    options = cfg.oft_options()
    # The port first: a taken one fails in a second, not after loading a 7B model.
    sock = listen(cfg.host, cfg.port)
    try:
        policy = Policy.load(cfg.ckpt, cfg.base, cfg.device, cfg.dataset, options)
        app = create_app(PolicyServer(policy, cfg.ckpt))
        config = uvicorn.Config(
            app, log_level="info", limit_concurrency=MAX_CONNECTIONS, timeout_graceful_shutdown=5
        )
        host, port = sock.getsockname()[:2]
        announce(f"serving {cfg.ckpt} on http://{_url_host(host)}:{port}/act (GET /health too)")
        # uvicorn re-raises Ctrl-C once it has shut down cleanly: nothing left to report.
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (IPv4 or IPv6); OSError names the address when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, exc.strerror, f"{host}:{port}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
