"""SkyPilot's size strings ("100", "100GB", "1Ti"), as gigabytes.

SkyPilot's MEMORY_SIZE_PATTERN: digits, then optionally one of KB/KI/MB/MI/
GB/GI/TB/TI/PB/PI in lower case, upper case or capitalised (`Gb`); binary
units throughout (1 GB = 1024 MB). A bare number is gigabytes.

Private to `spec` (which also takes its unit table): imports nothing from skytui.
"""

from __future__ import annotations

import re
from typing import Any

UNIT_GB = {"k": 1 / 1024**2, "m": 1 / 1024, "g": 1.0, "t": 1024.0, "p": 1024.0**2}
_SIZE = re.compile(r"^([0-9]+)(?:([kmgtp])([bi]))?$")
_SPELLINGS = re.compile(r"^[0-9]+(?:[kmgtp][bi]|[KMGTP][BI]|[KMGTP][bi])?$")


def parse_size_gb(value: Any) -> float | None:
    """Gigabytes, or None when `value` is not one of SkyPilot's size forms."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value)
    if not isinstance(value, str) or not _SPELLINGS.match(value):
        return None
    match = _SIZE.match(value.lower())
    assert match is not None  # _SPELLINGS is stricter
    number, unit = int(match.group(1)), match.group(2)
    return number * UNIT_GB[unit] if unit else float(number)
