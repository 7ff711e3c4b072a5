"""STAC: one Item per exported COG (pystac), validation that works offline, and static-catalog ingest.

Writing (:func:`write_item`, called by the GeoTIFF exporter)
    ``<stem>.stac.json`` beside ``<stem>.tif``: a STAC 1.1 Item whose geometry/bbox are the
    raster's footprint in WGS84, with the projection extension (``proj:code``, ``proj:shape``,
    ``proj:transform``, through pystac's ProjectionExtension), the file extension
    (``file:checksum``: the COG's sha256 as a multihash, ``file:size``) and the processing
    extension (``processing:software``, ``processing:lineage``, ``processing:datetime``). pystac
    has no class for the processing extension, so those three fields are set by hand, with its
    schema URI in ``stac_extensions``. ``datetime`` is the acquisition time when the store knows
    it (``attrs["datetime"]``), else the processing time (then ``properties["scorerecon:datetime_is"]``
    says so).

Validation (:func:`validate_item`)
    pystac ships the core STAC 1.1 JSON schemas (item, geojson) and validates against them
    offline; the extension schemas are fetched from the network by pystac, which this project's
    machines cannot reach. So the core schema is checked with pystac's validator, and the
    extension fields with the structural rules of their specs, written here (types and required
    members); the report says which.

Ingest (:func:`read`, ``scorerecon ingest catalog.json``)
    A local static catalog (``catalog.json`` / ``collection.json``) or a single Item JSON: every
    Item's GeoTIFF assets (media type ``image/tiff`` or an ``.tif``/``.tiff`` href) are read through
    the GeoTIFF reader (groups per resolution, as for the bare files); the catalog and item JSONs
    join ``source_files`` and the item ids go to ``attrs["stac"]``. Several items are one store only
    when their assets stack (the GeoTIFF reader refuses mismatched grids); pick one with
    ``--item ID`` (``item=``) otherwise.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import xarray as xr

from scorerecon import __version__
from scorerecon.errors import InputError
from scorerecon.modalities.io.store import describe_sources, sha256_file

PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
READER = "scorerecon.modalities.io.stac"


def item_path_for(cog: str | os.PathLike) -> Path:
    """Where the STAC Item of a COG goes: ``name.tif`` -> ``name.stac.json``."""
    cog = Path(cog)
    return cog.with_name(cog.name.rsplit(".", 1)[0] + ".stac.json")


def write_item(cog: str | os.PathLike, item_path: str | os.PathLike, record: dict[str, Any],
               when: datetime.datetime, asset_name: str | None = None, acquired: str | None = None) -> Path:
    """Write the STAC Item describing ``cog`` (see the module docstring); returns ``item_path``.

    ``cog`` may be a staging name; ``asset_name`` is the file name the COG will have beside the item.
    """
    import pystac
    import rasterio
    from pystac.extensions.file import FileExtension
    from pystac.extensions.projection import ProjectionExtension
    from rasterio.warp import transform_bounds, transform_geom

    cog, item_path = Path(cog), Path(item_path)
    asset_name = asset_name or cog.name
    with rasterio.open(cog) as src:
        bounds = src.bounds
        crs, transform, shape = src.crs, src.transform, (src.height, src.width)
        epsg = crs.to_epsg()
    bbox = list(transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))
    footprint = {"type": "Polygon", "coordinates": [[
        (bounds.left, bounds.bottom), (bounds.right, bounds.bottom), (bounds.right, bounds.top),
        (bounds.left, bounds.top), (bounds.left, bounds.bottom)]]}
    geometry = transform_geom(crs, "EPSG:4326", footprint)
    geometry = {"type": geometry["type"], "coordinates": json.loads(json.dumps(geometry["coordinates"]))}
    properties: dict[str, Any] = {}
    if acquired:
        dt = datetime.datetime.fromisoformat(str(acquired).replace("Z", "+00:00"))
    else:
        dt = when
        properties["scorerecon:datetime_is"] = "processing time (the store records no acquisition time)"
    stem = asset_name.rsplit(".", 1)[0]
    item = pystac.Item(id=stem, geometry=geometry, bbox=bbox, datetime=dt, properties=properties)
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    projection.code = f"EPSG:{epsg}" if epsg else None
    if not epsg:
        projection.wkt2 = crs.to_wkt()
    projection.shape = list(shape)
    projection.transform = list(transform)[:6]
    item.stac_extensions.append(PROCESSING_SCHEMA)
    item.properties["processing:software"] = {"scorerecon": __version__}
    item.properties["processing:lineage"] = (f"{record['exported_by']} of group {record['group']}; sources: "
                                             + ", ".join(f"{Path(s['path']).name} (sha256 {s['sha256']})"
                                                         for s in record["source_files"]))
    item.properties["processing:datetime"] = when.isoformat().replace("+00:00", "Z")
    asset = pystac.Asset(href=f"./{asset_name}", media_type=COG_MEDIA_TYPE, roles=["data"],
                         title=f"scorerecon export of {Path(record['source_store']).name}")
    item.add_asset("data", asset)
    file_ext = FileExtension.ext(asset, add_if_missing=True)
    file_ext.checksum = "1220" + sha256_file(cog)  # multihash: sha2-256 (0x12), 32 bytes (0x20)
    file_ext.size = cog.stat().st_size
    item_dict = item.to_dict(include_self_link=False, transform_hrefs=False)
    item_path.write_text(json.dumps(item_dict, indent=2) + "\n")
    return item_path


def _check(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise InputError(path, f"STAC item invalid: {message}")


def validate_item(path: str | os.PathLike) -> list[str]:
    """Validate an Item: core STAC schema offline (pystac), extension fields structurally.

    Returns what was checked; raises :class:`InputError` naming the first problem.
    """
    import pystac
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    path = Path(path)
    data = json.loads(path.read_text())
    try:
        JsonSchemaSTACValidator().validate_core(data, pystac.STACObjectType.ITEM, data["stac_version"],
                                                href=str(path))
    except pystac.STACValidationError as exc:
        raise InputError(path, f"STAC core schema: {str(exc).splitlines()[0]}") from None
    props, checked = data["properties"], ["core item schema (pystac, offline)"]
    if PROCESSING_SCHEMA in data.get("stac_extensions", []):
        software = props.get("processing:software")
        _check(isinstance(software, dict) and software and all(isinstance(v, str) for v in software.values()),
               path, "processing:software must be a non-empty object of name -> version strings")
        _check(isinstance(props.get("processing:lineage", ""), str), path, "processing:lineage must be a string")
        if "processing:datetime" in props:
            datetime.datetime.fromisoformat(props["processing:datetime"].replace("Z", "+00:00"))
        _check(any(k.startswith("processing:") for k in props), path, "processing extension declared but unused")
        checked.append("processing extension fields (structural)")
    for ext in data.get("stac_extensions", []):
        if "/projection/" in ext:
            _check("proj:code" in props or "proj:wkt2" in props, path, "projection needs proj:code or proj:wkt2")
            shape, transform = props.get("proj:shape"), props.get("proj:transform")
            _check(isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) for v in shape),
                   path, "proj:shape must be [rows, cols]")
            _check(isinstance(transform, list) and len(transform) in (6, 9), path,
                   "proj:transform must have 6 or 9 numbers")
            checked.append("projection extension fields (structural)")
        if "/file/" in ext:
            for name, asset in data["assets"].items():
                checksum = asset.get("file:checksum", "")
                _check(isinstance(checksum, str) and all(c in "0123456789abcdef" for c in checksum),
                       path, f"asset {name}: file:checksum must be a hex multihash")
            checked.append("file extension fields (structural)")
    return checked


# ----------------------------------------------------------------------------------------------
# ingest


def is_stac_json(path: str | os.PathLike) -> bool:
    """Is ``path`` a STAC Catalog / Collection / Item JSON file (cheap check for ingest's detection)?"""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "stac_version" in data and data.get("type") in ("Catalog", "Collection",
                                                                                      "Feature")


def _items(path: Path) -> tuple[list[Any], list[Path]]:
    """Items reachable from a catalog/collection/item file, and every JSON file read on the way."""
    import pystac

    try:
        obj = pystac.read_file(str(path))
    except Exception as exc:  # pystac raises several types for a bad file
        raise InputError(path, f"not a readable STAC file ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, pystac.Item):
        return [obj], [path]
    if not isinstance(obj, pystac.Catalog):
        raise InputError(path, f"STAC {type(obj).__name__} is not a catalog or item")
    items, files = [], [path]
    for child in obj.walk():
        catalog, _, found = child
        href = catalog.get_self_href()
        if href and Path(href) != path.resolve():
            files.append(Path(href))
        for item in found:
            items.append(item)
            if item.get_self_href():
                files.append(Path(item.get_self_href()))
    return items, files


def _tiff_assets(item: Any) -> list[Path]:
    found = []
    for asset in item.assets.values():
        href = asset.get_absolute_href() or asset.href
        media = (asset.media_type or "").lower()
        if media.startswith("image/tiff") or href.lower().endswith((".tif", ".tiff")):
            if "://" in href and not href.startswith("file://"):
                raise InputError(Path(item.get_self_href() or item.id),
                                 f"asset {href} is remote; only local static catalogs are ingested")
            found.append(Path(href.removeprefix("file://")))
    return found


def read(paths: list[Path], item: str | None = None, **options: Any) -> dict[str, xr.Dataset]:
    """Read the GeoTIFF assets of a local static STAC catalog or item (see the module docstring)."""
    from scorerecon.modalities.io import geotiff

    items, files = [], []
    for path in paths:
        found, read_files = _items(Path(path))
        items += found
        files += read_files
    if item is not None:
        items = [i for i in items if i.id == item]
        if not items:
            raise InputError(Path(paths[0]), f"no STAC item with id {item!r}")
    assets = [asset for i in items for asset in _tiff_assets(i)]
    if not assets:
        raise InputError(Path(paths[0]), "no GeoTIFF assets in this STAC catalog")
    for asset in assets:
        if not asset.exists():
            raise InputError(asset, "STAC asset file does not exist")
    groups = geotiff.read(assets, **options)
    catalog_sources = describe_sources(dict.fromkeys(files))
    for ds in groups.values():
        ds.attrs["source_files"] = list(ds.attrs.get("source_files", [])) + catalog_sources
        ds.attrs["stac"] = {"items": [i.id for i in items],
                            "datetimes": [i.datetime.isoformat() if i.datetime else None for i in items]}
        ds.attrs["reader"] = READER
        if len({i.datetime for i in items}) == 1 and items[0].datetime is not None:
            ds.attrs["datetime"] = items[0].datetime.isoformat()
    return groups
