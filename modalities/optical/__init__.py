"""Optical remote sensing physics: band specifications, Wald's-protocol degradation, classical
pan-sharpening and cloud-removal baselines, quality metrics, real-cloud blending and the
paired training datasets of the conditional score models (pan-sharpening, cloud removal).
"""
