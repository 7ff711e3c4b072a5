"""Which evaluation slices a prior has seen: a content-based holdout check for ``scorerecon evaluate``.

A prior's card lists its training sources (``data.sources``), the files behind them with their
sha256 (``data.source_files``, each with ``via`` = the source it belongs to) and what was held
out of each (``data.source_holdout`` or ``data.holdout``: half-open index ranges along the slice
axis). Evaluation slices are certified by *content*, never by index alone:

1. **Source sha256.** If the input's recorded source files (a store's ``source_files`` attrs,
   what ``scorerecon info`` prints) share a sha256 with a training source, the input *is* that
   source (the same file through the same reader): its slice index is the training index, and
   slices outside the source's held-out range are refused.
2. **Pixel fingerprint.** Where a training source can be opened here (its store or file from
   the card), every one of its slices (along each axis of a 3-D volume) is fingerprinted -- the
   sha256 of its values as float32, so a re-export to another dtype or format still matches --
   and so is every input slice, in its 8 flip/rotation variants. A match outside the source's
   held-out range is refused (a training slice re-saved under another name); a match inside it
   is a held-out slice. Cropped or resampled copies are not recognised (and are no longer the
   training slice's pixels).

Every other input is **unseen** data and is evaluated; the result says which
(:data:`UNSEEN` / :data:`HELD_OUT`). A card whose sources cannot be opened here is checked by
sha256 alone, and the record says so.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scorerecon.pipelines.errors import InputError

__all__ = ["HELD_OUT", "UNSEEN", "certify_slices", "open_training_source", "slice_fingerprints"]

UNSEEN = "unseen"
HELD_OUT = "held-out slices of a training source"


def _fingerprint(image: np.ndarray) -> str:
    a = np.ascontiguousarray(np.asarray(image, dtype=np.float32))
    return hashlib.sha256(f"{a.shape}".encode() + a.tobytes()).hexdigest()


def slice_fingerprints(image: np.ndarray) -> set[str]:
    """Fingerprints of a 2-D slice in all 8 orientations (flips and 90-degree rotations)."""
    out = set()
    for k in range(4):
        r = np.rot90(image, k)
        out.add(_fingerprint(r))
        out.add(_fingerprint(r[:, ::-1]))
    return out


def _source_holdouts(data: dict[str, Any]) -> list[dict[str, list[int]]]:
    sources = data.get("sources") or []
    per = data.get("source_holdout")
    if isinstance(per, list) and len(per) == len(sources):
        return [dict(h or {}) for h in per]
    return [dict(data.get("holdout") or {}) for _ in sources]


def _source_files(data: dict[str, Any], index: int) -> list[dict[str, Any]]:
    """The file records of training source ``index`` (``via`` names it; older cards: one file per source)."""
    sources = data.get("sources") or []
    files = data.get("source_files") or []
    if any("via" in f for f in files):
        return [f for f in files if str(f.get("via", "")) == str(sources[index])]
    return [files[index]] if len(files) == len(sources) else []


def _held(holdout: dict[str, list[int]], axis: str, index: int) -> bool:
    if axis not in holdout:
        return False
    lo, hi = (int(v) for v in holdout[axis])
    return lo <= index < hi


def _candidates(data: dict[str, Any], index: int) -> list[tuple[Path, str | None]]:
    """Where training source ``index`` may be here: its store / path, then its files (absolute, or the
    same path's tail under the working directory, e.g. ``data/demo/...`` of another checkout), each
    with the sha256 a file must have (``None`` for the source entry itself)."""
    from scorerecon.models.data import resolve_source_path

    out: list[tuple[Path, str | None]] = []
    with contextlib.suppress(InputError):
        out.append((resolve_source_path(str((data.get("sources") or [])[index]), Path.cwd()), None))
    files = _source_files(data, index)
    if len(files) == 1 and files[0].get("path"):
        parts = Path(str(files[0]["path"])).parts
        out += [(Path(*parts[k:]) if k else Path(*parts), files[0].get("sha256")) for k in range(len(parts))]
    return out


def open_training_source(data: dict[str, Any], index: int) -> Any | None:
    """The card's training source ``index`` opened here (its store, else its file), or ``None``."""
    from scorerecon.modalities.io.store import sha256_file
    from scorerecon.models.data import _Volume

    for path, sha in _candidates(data, index):
        if not path.exists() or (sha is not None and (not path.is_file() or sha256_file(path) != sha)):
            continue
        try:
            return _Volume(path, data.get("group", "/"), data.get("variable", "image"), cache_mb=1024,
                           fold_frames=bool(data.get("channel_dim") is None))
        except InputError:
            continue
    return None


def _training_fingerprints(volume: Any, holdout: dict[str, list[int]]) -> dict[str, bool]:
    """``{fingerprint: held_out}`` of every slice of a training volume along each of its spatial dims."""
    shape = volume.shape
    spatial = [d for d in ("z", "y", "x") if d in shape]
    out: dict[str, bool] = {}
    for axis in spatial if len(spatial) == 3 else spatial[:1]:
        for j in range(int(shape[axis])):
            image = volume.read({axis: j})
            if image.ndim != 2 or not np.ptp(image) > 0:  # a blank slice identifies nothing
                continue
            fp = _fingerprint(image)
            out[fp] = out.get(fp, True) and _held(holdout, axis, j)
    return out


def certify_slices(card: dict[str, Any], slices: Sequence[int], input_files: Iterable[dict[str, Any]],
                   images: np.ndarray | None, checkpoint: str, axis: str = "z") -> dict[str, Any]:
    """Refuse evaluation slices the prior was trained on; return the record for the result JSON.

    ``slices``: the input's slice indices along ``axis``; ``input_files``: its source records
    (``{"path", "sha256"}``); ``images``: the raw slices ``(S, H, W)`` as read (for the pixel
    fingerprint), or ``None``. Raises :class:`InputError` naming the training slices.
    """
    data = card.get("data", {})
    sources = data.get("sources") or []
    holdouts = _source_holdouts(data)
    input_sha = {str(f.get("sha256")) for f in input_files if f.get("sha256")}
    same_source: list[int] = []
    for i in range(len(sources)):
        if input_sha & {str(f.get("sha256")) for f in _source_files(data, i)}:
            same_source.append(i)
    refused: dict[int, str] = {}
    held: set[int] = set()
    for i in same_source:
        hold = holdouts[i]
        if axis not in hold:
            raise InputError(checkpoint, f"the input is training source {sources[i]} (same sha256) and the model card "
                                         f"holds nothing of it out along {axis!r}: every slice was used for training")
        for s in slices:
            if _held(hold, axis, s):
                held.add(s)
            else:
                refused[s] = f"{Path(str(sources[i])).name} {axis}={s} (held out: {axis} in {hold[axis]})"
    checked, unavailable = [], []
    if images is not None:
        prints = [slice_fingerprints(img) for img in np.asarray(images)]
        for i in range(len(sources)):
            volume = open_training_source(data, i)
            if volume is None:
                unavailable.append(str(sources[i]))
                continue
            checked.append(str(sources[i]))
            known = _training_fingerprints(volume, holdouts[i])
            for s, fps, img in zip(slices, prints, np.asarray(images), strict=True):
                hits = [known[f] for f in fps if f in known] if np.ptp(img) > 0 else []
                if not hits:
                    continue
                if all(hits):
                    held.add(s)
                else:
                    refused.setdefault(s, f"{Path(str(sources[i])).name}: same pixels as a training slice")
    if refused:
        bad = sorted(refused)
        raise InputError(checkpoint, f"slices {bad} were used to train this prior ({refused[bad[0]]}); evaluate on "
                                     "held-out slices of its training sources or on any other data")
    label = HELD_OUT if held else UNSEEN
    return {"data": label, "axis": axis,
            "same_source_sha256": [str(sources[i]) for i in same_source],
            "held_out_ranges": [holdouts[i].get(axis) for i in same_source],
            "fingerprinted_sources": checked, "sources_not_available_here": unavailable,
            "method": "source sha256 + pixel fingerprints of the training slices (8 orientations)" if checked
            else "source sha256 only (the training sources are not available here)"}
