"""Real photographs from registry packages: the catalogue, its train / held-out split, and the installer.

Three registry packages ship photographs the natural-image priors can train and be tested on
(nothing is downloaded at run time; ``make photos`` fetches the packages with pip and apt and runs
:func:`install` on them):

* PyPI ``mvtb-data==1.6.1`` (the Machine Vision Toolbox's images, MIT): campus, flowers,
  stereo pairs, aerial mosaics, street scenes; 640 px to 3264 px. ``lena.png`` and ``58060.png``
  (a BSDS500 image, research-only licence) are not used, nor the synthetic / calibration images
  (blobs, sharks, morphology examples, checkerboards, AprilTags, the Adelson illusion, the
  Mona Lisa painting).
* Debian ``opencv-doc`` (OpenCV's sample data, Apache-2.0 AND BSD-3-Clause per Debian's
  copyright file): about 30 photographs up to 1282 px. Logos, drawings, paintings
  (``starry_night``), renders (``Blender_Suzanne*``), synthetic test patterns, deliberately
  blurred captures (``licenseplate_motion``, ``text_*``), checkerboards and duplicates
  (``butterfly.jpg`` = mvtb's, ``ela_modified.jpg`` = an edited ``ela_original.jpg``) are not used.
* PyWavelets' bundled ``aero``, ``ascent`` and ``camera`` (512x512 grey; ascent from a
  public-domain photo, camera CC0 by Lav Varshney), written to PNG from the installed package.

Files are copied byte for byte (PNG / JPEG as in the package; sha256 recorded), so a photo's
hash in a model card identifies the package file. Grey photos are read as RGB with equal channels
(:func:`~scorerecon.modalities.natural.datasets.load_rgb`).

**Split.** Photos of one scene (stereo pairs, sequences, the 25 campus views, the aerial
mosaic tiles) form a *group* and always fall on the same side. A group is held out iff the
first 8 hex digits of ``sha256(group name)`` are divisible by 4 (about a quarter of the groups):
deterministic, independent of file order, and not chosen by looking at results.

Written here because no package provides this curation; the copying is ``zipfile`` / ``shutil``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scorerecon.errors import InputError

__all__ = ["CATALOGUE", "LICENCES", "MANIFEST", "Photo", "install", "photo_files", "split_of"]

MANIFEST = "manifest.json"
MVTB_PREFIX = "mvtbdata/images/"
OPENCV_PREFIX = "usr/share/doc/opencv-doc/examples/data/"

#: Licence of each source, as its package states it.
LICENCES: dict[str, dict[str, str]] = {
    "mvtb": {"package": "PyPI mvtb-data 1.6.1", "licence": "MIT",
             "evidence": "wheel METADATA classifier 'License :: OSI Approved :: MIT License' (Peter Corke)"},
    "opencv": {"package": "Debian opencv-doc 4.6.0+dfsg-12 (examples/data)", "licence": "Apache-2.0 AND BSD-3-Clause",
               "evidence": "/usr/share/doc/opencv-doc/copyright, 'Files: *' (samples/data has no own stanza; "
                           "lena.jpg is excluded from the Debian source)"},
    "pywt": {"package": "PyPI PyWavelets (installed; pywt/data/*.npz)", "licence": "MIT (package); ascent from a "
             "public-domain photo; camera CC0 (Lav Varshney)",
             "evidence": "PyWavelets LICENSE; docstrings of pywt.data.ascent / pywt.data.camera"},
}


@dataclass(frozen=True)
class Photo:
    """One photograph: where it is in its package, its scene group and whether it is colour."""

    source: str  # "mvtb", "opencv" or "pywt"
    member: str  # path inside the package (mvtb: under mvtbdata/images/; opencv: under examples/data/; pywt: name)
    group: str
    colour: bool = True

    @property
    def file(self) -> str:
        """Relative path of the installed file (``<source>/<basename>``; pywt: ``.png``)."""
        base = f"{self.member}.png" if self.source == "pywt" else Path(self.member).name
        return f"{self.source}/{base}"


def _photos(source: str, colour: bool, spec: dict[str, list[str]]) -> list[Photo]:
    return [Photo(source, member, group, colour) for group, members in spec.items() for member in members]


_CAMPUS = [f"campus/P10704{n}.png" for n in (91, 93, 94, 95, 96, 97, 98, 99)] + \
          [f"campus/P10705{n:02d}.png" for n in (0, 1, 3, 4, 5, 6, 7, 9, 10, 12, 14, 15)] + \
          [f"campus/holdout/P10705{n:02d}.png" for n in (2, 8, 11, 13)] + ["campus/holdout/P1070492.png"]

#: Every photograph used, grouped by scene (see the module docstring for what is left out and why).
CATALOGUE: tuple[Photo, ...] = tuple(
    _photos("mvtb", True, {
        "butterfly": ["butterfly.jpg"], "church": ["church.png"], "eiffel": ["eiffel-1.png", "eiffel-2.png"],
        "image3": ["image3.jpg"], "lab-scene": ["lab-scene.png"], "notre-dame": ["notre-dame.png"],
        "aerial": [f"mosaic/aerial-{n:02d}.png" for n in (8, 9, 10)], "aerialphoto": ["mosaic/aerialphoto.png"],
        "parks": ["parks.png"], "road": ["road.png"], "rocks2": ["rocks2-l.png", "rocks2-r.png"], "roof": ["roof.png"],
        "tomato": [f"tomato_{n}.png" for n in (124, 14, 35, 54)], "walls": ["walls-l.png", "walls-r.png"],
        "greenscreen": ["greenscreen.png"], "yellowtargets": ["yellowtargets.png"], "arucoboard": ["arucoboard.png"],
        "tags": ["tags.png"], **{f"flowers{n}": [f"flowers{n}.png"] for n in range(1, 10)}, "campus": _CAMPUS,
    })
    + _photos("mvtb", False, {
        "castle": ["castle.png", "castle2.png"], "street": ["street.png"], "penguins": ["penguins.png"],
        "building2": ["building2-1.png", "building2-2.png"], "seq": [f"seq/im.{n:03d}.png" for n in range(1, 10)],
        "aerial2": [f"mosaic/aerial2-{n:03d}.png" for n in range(1, 11)],
    })
    + _photos("opencv", True, {
        "aero": ["aero1.jpg", "aero3.jpg"], "aloe": ["aloeL.jpg", "aloeR.jpg"], "apple": ["apple.jpg"],
        "baboon": ["baboon.jpg"], "board": ["board.jpg"], "building": ["building.jpg"], "chicky": ["chicky_512.png"],
        "ela": ["ela_original.jpg"], "fruits": ["fruits.jpg"], "graf": ["graf1.png", "graf3.png"],
        "home": ["home.jpg"], "stereo-books": ["left.jpg", "right.jpg"], "leuven": ["leuvenA.jpg", "leuvenB.jpg"],
        "messi": ["messi5.jpg"], "orange": ["orange.jpg"], "rubberwhale": ["rubberwhale1.png", "rubberwhale2.png"],
        "smarties": ["smarties.png"], "squirrel": ["squirrel_cls.jpg"], "stuff": ["stuff.jpg"],
        "sudoku": ["sudoku.png"],
    })
    + _photos("opencv", False, {
        "basketball": ["basketball1.png", "basketball2.png"], "box": ["box.png", "box_in_scene.png"],
        "blox": ["blox.jpg"],
    })
    + _photos("pywt", False, {"pywt-aero": ["aero"], "ascent": ["ascent"], "camera": ["camera"]})
)


def split_of(group: str) -> str:
    """``"heldout"`` or ``"train"`` for a scene group (module docstring: sha256 rule, ~1 in 4 held out)."""
    return "heldout" if int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 4 == 0 else "train"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pywt_png(name: str) -> bytes:
    import io

    import pywt.data
    from PIL import Image

    arr = np.asarray(getattr(pywt.data, name)())
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _debian_version(root: Path) -> str:
    """``opencv-doc``'s version from its ``changelog.Debian.gz`` first line (``opencv (4.6.0+dfsg-12) ...``)."""
    import gzip

    log = root / "usr/share/doc/opencv-doc/changelog.Debian.gz"
    if not log.is_file():
        return "unknown"
    with gzip.open(log, "rt", encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    return first.split("(", 1)[-1].split(")", 1)[0] if "(" in first else "unknown"


def _pywt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("PyWavelets")
    except PackageNotFoundError:
        return "unknown"


def install(out: str | os.PathLike, mvtb_wheel: str | os.PathLike, opencv_root: str | os.PathLike) -> Path:
    """Copy every catalogued photo into ``out/<source>/`` and write ``out/manifest.json``.

    ``mvtb_wheel`` is the downloaded ``mvtb_data-1.6.1-py3-none-any.whl``; ``opencv_root`` the
    folder ``dpkg -x opencv-doc_*.deb`` extracted into. The photos are written to a temporary
    folder next to ``out`` and moved into place at the end, the manifest last (an interrupted run
    never leaves a manifest over incomplete photos). ``out`` may hold the tracked
    ``LICENSES.md``; earlier photo folders are replaced only when a manifest says they were
    written here, and anything else in ``out`` is refused. Returns the manifest path.
    """
    out, wheel, root = Path(out), Path(mvtb_wheel), Path(opencv_root)
    if not wheel.is_file():
        raise InputError(wheel, "mvtb-data wheel not found (pip download mvtb-data==1.6.1 --no-deps)")
    if not (root / OPENCV_PREFIX).is_dir():
        raise InputError(root, f"no {OPENCV_PREFIX} here (apt-get download opencv-doc && dpkg -x <deb> <root>)")
    sources = sorted(LICENCES)
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in {MANIFEST, "LICENSES.md", *sources})
        ours = [p for p in sources if (out / p).exists()]
        if foreign or (ours and not (out / MANIFEST).is_file()):
            raise InputError(out, f"holds files the photo installer did not write ({(foreign or ours)[:3]}); "
                                  "not touching it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))  # same file system: renames
    entries = []
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            for photo in CATALOGUE:
                if photo.source == "mvtb":
                    member = MVTB_PREFIX + photo.member
                    if member not in names:
                        raise InputError(wheel, f"has no {member} (not mvtb-data 1.6.1?)")
                    data = zf.read(member)
                elif photo.source == "opencv":
                    src = root / OPENCV_PREFIX / photo.member
                    if not src.is_file():
                        raise InputError(src, "missing from the extracted opencv-doc package")
                    data = src.read_bytes()
                else:
                    data = _pywt_png(photo.member)
                dest = tmp / photo.file
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                entries.append({**asdict(photo), "file": photo.file, "split": split_of(photo.group),
                                "sha256": _sha256(data), "licence": LICENCES[photo.source]["licence"]})
        manifest = {"format": "scorerecon-photos", "version": 1, "licences": LICENCES,
                    "packages": {"mvtb": wheel.name, "opencv": _debian_version(root), "pywt": _pywt_version()},
                    "split_rule": "group held out iff int(sha256(group)[:8], 16) % 4 == 0", "photos": entries}
        out.mkdir(exist_ok=True)
        (out / MANIFEST).unlink(missing_ok=True)
        for source in sources:
            if (out / source).exists():
                shutil.rmtree(out / source)
            if (tmp / source).exists():
                (tmp / source).rename(out / source)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        (tmp / MANIFEST).rename(out / MANIFEST)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / MANIFEST


def photo_files(folder: str | os.PathLike, split: str = "train", colour: bool | None = None) -> list[Path]:
    """The installed photos of ``split`` (``"train"``, ``"heldout"`` or ``"all"``), in catalogue order.

    ``colour`` keeps only colour (``True``) or grey (``False``) photos. Raises :class:`InputError`
    when ``folder`` has no manifest (run ``make photos``) or a listed file is missing.
    """
    folder = Path(folder)
    if split not in ("train", "heldout", "all"):
        raise InputError(None, f"photo split must be train, heldout or all, got {split!r}")
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(folder, "no photo manifest.json here; run `make photos` to install the photographs")
    try:
        entries = json.loads(path.read_text())["photos"]
    except (ValueError, KeyError) as exc:
        raise InputError(path, f"not a photo manifest ({type(exc).__name__}: {exc})") from None
    files = []
    for e in entries:
        if (split != "all" and e["split"] != split) or (colour is not None and bool(e["colour"]) != colour):
            continue
        f = folder / e["file"]
        if not f.is_file():
            raise InputError(f, "listed in the photo manifest but missing; rerun `make photos`")
        files.append(f)
    return files


def main(argv: list[str] | None = None) -> None:
    """``python -m scorerecon.modalities.natural.photos --mvtb-wheel W --opencv-root R --out data/photos``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mvtb-wheel", required=True)
    parser.add_argument("--opencv-root", required=True)
    parser.add_argument("--out", default="data/photos")
    args = parser.parse_args(argv)
    try:
        manifest = install(args.out, args.mvtb_wheel, args.opencv_root)
    except InputError as exc:
        raise SystemExit(f"photos: error: {exc.one_line()}") from None
    entries = json.loads(manifest.read_text())["photos"]
    held = [e for e in entries if e["split"] == "heldout"]
    print(f"{len(entries)} photos in {Path(args.out)} ({len(entries) - len(held)} train, {len(held)} held out: "
          f"{sorted({e['group'] for e in held})})")


if __name__ == "__main__":
    main()
