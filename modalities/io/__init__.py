"""Container-format readers and writers: DICOM, NIfTI, GeoTIFF, raw k-space, images, Zarr."""
