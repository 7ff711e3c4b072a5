"""Streamed sha256 digests: the whole file's sha256 whatever order, gaps or overlaps the pieces come in."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from scorerecon.modalities.io import digests
from scorerecon.modalities.io.digests import StreamedDigest
from scorerecon.modalities.io.store import sha256_file

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "demo" / "kodim23.png"  # a real file shipped with the project


def pieces(data: bytes, size: int) -> list[tuple[int, bytes]]:
    return [(offset, data[offset:offset + size]) for offset in range(0, len(data), size)]


@pytest.mark.parametrize("order", ["in order", "shuffled", "reversed"])
def test_any_order_gives_the_file_digest(order: str) -> None:
    data = SOURCE.read_bytes()
    parts = pieces(data, 4096)
    if order == "shuffled":
        random.Random(0).shuffle(parts)
    elif order == "reversed":
        parts.reverse()
    digest = StreamedDigest(SOURCE)
    for offset, piece in parts:
        digest.feed(offset, piece)
    assert digest.hashed_bytes == len(data)  # everything was hashed from the fed bytes
    assert digest.hexdigest() == sha256_file(SOURCE) == str(digest) and digest == sha256_file(SOURCE)


def test_gaps_overlaps_and_overflow_fall_back_to_reading_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    data = SOURCE.read_bytes()
    monkeypatch.setattr(digests, "MAX_PENDING_BYTES", 10_000)
    digest = StreamedDigest(SOURCE)
    digest.feed(0, data[:1000])
    digest.feed(500, data[500:1500])  # overlaps what is hashed: ignored
    digest.feed(50_000, data[50_000:80_000])  # beyond the pending bound: dropped
    digest.feed(2000, data[2000:3000])  # a gap before it: held
    assert digest.hashed_bytes == 1000
    assert digest.hexdigest() == sha256_file(SOURCE)
    digest.feed(1000, data[1000:2000])  # after the digest is final: no effect
    assert digest.hexdigest() == sha256_file(SOURCE)
