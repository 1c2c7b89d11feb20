"""The fleet freeze as the scheduling core sees it: re-exported from :mod:`kanade.core.freeze`,
the one freeze model (kept so ``kanade.core.scheduling.freeze`` imports keep working)."""

from __future__ import annotations

from kanade.core.freeze import Freeze, freeze_from_json, is_frozen

__all__ = ["Freeze", "freeze_from_json", "is_frozen"]
