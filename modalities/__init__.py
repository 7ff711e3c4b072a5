"""Formats (io) and per-modality physics: MRI, CT, optical remote sensing, natural images."""
