"""Re-export of :class:`scorerecon.errors.InputError` under its historical name.

The one-line user-error type moved to the neutral :mod:`scorerecon.errors` so that the score core
(``models/``) and the modality code (``modalities/``) can raise it without importing the pipeline
layer; code that imports it from here keeps working.
"""

from __future__ import annotations

from scorerecon.errors import InputError

__all__ = ["InputError"]
