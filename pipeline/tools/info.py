"""`vla-data info`: what a shard set holds, in a few lines, before anyone spends GPU hours on it."""

from __future__ import annotations

from shards.manifest import Manifest
from shards.platforms import matching_platforms


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def oft_match(manifest: Manifest) -> str:
    """Which OFT platform the set trains for (made with --robot), or whose constants it fits."""
    robot = manifest.options.get("robot")
    proprio = manifest.proprio_dim or 0
    if robot:
        dropped = manifest.dropped_steps()
        noops = f"; {dropped} no-op steps dropped" if robot == "libero" else ""
        return f"{robot} (made with --robot {robot}{noops})"
    found = matching_platforms(manifest.chunk, manifest.action_dim, proprio)
    if not found:
        return "no platform fits (chunk, action or proprio dims); convert with --robot"
    names = " or ".join(p.name for p in found)
    return f"fits {names} by its dims (convert with --robot for OFT's masks and conventions)"


def describe(manifest: Manifest, source: str) -> list[str]:
    total = sum(s.bytes for shards in manifest.splits.values() for s in shards)
    lines = [
        f"shard set   {source}",
        f"dataset     {manifest.dataset} (layout {manifest.layout})",
        f"format      {manifest.format} v{manifest.format_version}, "
        f"written by vla-shards {manifest.tool_version}",
        f"cameras     {', '.join(manifest.cameras)} at {manifest.image_size}x{manifest.image_size}",
        f"actions     chunk {manifest.chunk} x {manifest.action_dim} dims"
        + (f"; proprio {manifest.proprio_dim} dims" if manifest.proprio_dim else ""),
        f"size        {_size(total)}",
        f"OpenVLA-OFT {oft_match(manifest)}",
    ]
    for split in ("train", "val"):
        shards = manifest.shards(split)
        lines.append(
            f"{split:<12}{manifest.episode_count(split)} episodes, "
            f"{manifest.samples(split)} samples, {len(shards)} shards"
        )
    skipped = manifest.skipped()
    lines.append(f"skipped     {len(skipped)} episode(s)")
    lines += [f"  {e.path}: {e.reason}" for e in skipped]
    return lines
