"""Source-file sha256 digests computed from the bytes a reader already reads.

Why: every store records the sha256 of its sources, and hashing in a separate pass reads every
source byte twice. A reader that streams a file's bytes chunk by chunk (uncompressed NIfTI slabs,
whole DICOM files) feeds them to a :class:`StreamedDigest` instead, so hashing runs inside the
chunk tasks, in parallel with compression and writing (hashlib releases the GIL), and the file is
read once. Dask may compute chunks out of file order: bytes that arrive ahead of the hash's
position wait in a bounded buffer; past that bound they are dropped and :meth:`hexdigest`
re-reads whatever was not hashed from the file, so the digest is always the whole file's.

hashlib has no resumable, order-independent sha256, so this small ordering layer is our own.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

#: Bytes held for out-of-order chunks before falling back to re-reading them at the end.
MAX_PENDING_BYTES = 256 * 2**20
_BLOCK = 8 * 2**20


class StreamedDigest:
    """The sha256 of one file, fed ``(offset, bytes)`` pieces in any order by concurrent readers.

    ``str()``/``==`` give the hex digest, so a record holding one reads like a plain sha256 string;
    :func:`scorerecon.modalities.io.store.write_store` records it after the data are written.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self._hash = hashlib.sha256()
        self._position = 0
        self._pending: dict[int, bytes] = {}
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._hex: str | None = None

    def feed(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Account for ``data`` found at byte ``offset`` of the file."""
        with self._lock:
            if self._hex is not None or offset + len(data) <= self._position:
                return
            if offset == self._position:
                self._hash.update(data)
                self._position += len(data)
                self._drain()
            elif (offset > self._position and offset not in self._pending
                  and self._pending_bytes + len(data) <= MAX_PENDING_BYTES):
                self._pending[offset] = bytes(data)
                self._pending_bytes += len(data)

    def _drain(self) -> None:
        while self._position in self._pending:
            piece = self._pending.pop(self._position)
            self._pending_bytes -= len(piece)
            self._hash.update(piece)
            self._position += len(piece)
        for stale in [k for k in self._pending if k < self._position]:  # overlapped by what was hashed
            self._pending_bytes -= len(self._pending.pop(stale))

    def hexdigest(self) -> str:
        """The file's sha256, reading from disk whatever the readers did not feed."""
        with self._lock:
            if self._hex is None:
                self._pending.clear()
                self._pending_bytes = 0
                with open(self.path, "rb") as handle:
                    handle.seek(self._position)
                    while block := handle.read(_BLOCK):
                        self._hash.update(block)
                self._hex = self._hash.hexdigest()
            return self._hex

    @property
    def hashed_bytes(self) -> int:
        """How many leading bytes are hashed so far (the rest is read by :meth:`hexdigest`)."""
        return self._position

    def __str__(self) -> str:
        return self.hexdigest()

    def __repr__(self) -> str:
        return f"StreamedDigest({str(self.path)!r}, hashed {self._position} of {self.size} bytes)"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StreamedDigest):
            return self.hexdigest() == other.hexdigest()
        if isinstance(other, str):
            return self.hexdigest() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.hexdigest())
