"""HTTP(S) shard streams that time out, retry with backoff and resume where they broke.

A stalled server costs one read timeout, not minutes; a dropped connection is picked up
again with a Range request at the byte where it stopped, so a shard is never read twice
from its start. urllib3 does the connecting and its Retry the waiting between attempts;
this module only keeps the byte position across responses.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util import Retry, Timeout

from common.errors import UserError


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name)
    try:
        value = default if text is None else float(text)
    except ValueError:
        raise UserError(f"{name}={text!r} is not a number") from None
    if value < 0 or (name == "VLA_HTTP_TIMEOUT_S" and value == 0):
        raise UserError(f"{name}={text!r} must be {'positive' if value == 0 else 'at least 0'}")
    return value


@dataclass(frozen=True)
class HttpConfig:
    """How shard streams treat a slow or failing server (environment variables override)."""

    # Seconds to wait for a connection, and for each read, before trying again.
    timeout_s: float = field(default_factory=lambda: _env_float("VLA_HTTP_TIMEOUT_S", 30.0))
    # Attempts after the first, for opening and for each break while reading.
    retries: int = field(default_factory=lambda: int(_env_float("VLA_HTTP_RETRIES", 5)))
    # Wait before retry k is backoff_s * 2**(k-1) seconds (urllib3's exponential backoff).
    backoff_s: float = field(default_factory=lambda: _env_float("VLA_HTTP_BACKOFF_S", 0.5))


_POOL = urllib3.PoolManager()


class ResumingStream(io.RawIOBase):
    """A read-only stream over one URL that reconnects with `Range: bytes=POS-` on a break."""

    def __init__(self, url: str, config: HttpConfig | None = None) -> None:
        self.url = url
        self.config = config or HttpConfig()
        self.position = 0
        self.retry = Retry(
            total=self.config.retries,
            backoff_factor=self.config.backoff_s,
            status_forcelist=(429, 500, 502, 503, 504),
            raise_on_status=False,
        )
        self.response = self._open()

    def _open(self) -> urllib3.BaseHTTPResponse:
        headers = {"Range": f"bytes={self.position}-"} if self.position else {}
        try:
            response = _POOL.request(
                "GET",
                self.url,
                headers=headers,
                preload_content=False,
                retries=self.retry,
                timeout=Timeout(connect=self.config.timeout_s, read=self.config.timeout_s),
            )
        except HTTPError as exc:
            raise OSError(
                f"{self.url}: cannot fetch ({getattr(exc, 'reason', None) or exc})"
            ) from None
        expected = 206 if self.position else 200
        if response.status != expected:
            response.close()
            why = "ignores Range requests" if response.status == 200 else f"HTTP {response.status}"
            raise OSError(f"{self.url}: cannot fetch from byte {self.position} ({why})")
        return response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        breaks = 0
        while True:
            try:
                n = self.response.readinto(buffer)
                self.position += n
                return n
            except (HTTPError, OSError) as exc:
                breaks += 1
                if breaks > self.config.retries:
                    raise OSError(
                        f"{self.url}: broke at byte {self.position} {breaks} times ({exc})"
                    ) from None
                self.response.close()
                # The same exponential backoff urllib3's Retry waits between attempts.
                time.sleep(self.config.backoff_s * 2 ** (breaks - 1))
                self.response = self._open()

    def close(self) -> None:
        if not self.closed:
            self.response.close()
        super().close()
