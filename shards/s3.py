"""s3:// shard sets: objects streamed with boto3, credentials and endpoint the usual AWS way.

boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE, ~/.aws/config and
~/.aws/credentials, and AWS_ENDPOINT_URL (or `endpoint_url` in the config file) for
S3-compatible stores (MinIO, Ceph, R2). Objects are streamed, never downloaded whole.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import IO

SCHEME = "s3://"


def split_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    bucket, _, key = url[len(SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{url}: no bucket in the S3 URL")
    return bucket, key


@lru_cache(maxsize=4)
def _client(pid: int):  # noqa: ARG001 - keyed by process: a client must not cross a fork
    try:
        import boto3
    except ImportError:  # optional dependency: only s3:// sets need it
        raise OSError("s3:// needs boto3: pip install 'vla-shards[s3]'") from None
    return boto3.session.Session().client("s3")  # not the default session: it caches config


def open_object(url: str) -> IO[bytes]:
    """A read stream over one object; OSError when it cannot be opened."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_url(url)
    try:
        return _client(os.getpid()).get_object(Bucket=bucket, Key=key)["Body"]
    except (BotoCoreError, ClientError) as exc:
        raise OSError(f"{url}: {exc}") from None


def read_text(url: str) -> str:
    with open_object(url) as body:
        return body.read().decode()
