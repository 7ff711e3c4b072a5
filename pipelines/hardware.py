"""Re-export of :mod:`scorerecon.hardware` (machine and software description) under its historical name.

It moved to the neutral top package so that training (``models/``) can describe its machine
without importing the pipeline layer.
"""

from __future__ import annotations

from scorerecon.hardware import cpu_model, describe, one_line, software_versions

__all__ = ["cpu_model", "describe", "one_line", "software_versions"]
