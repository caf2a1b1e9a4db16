"""Printing and saving the figures of a benchmark script (shared by the scripts in this folder)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def report(figures: Mapping[str, Any], json_path: str | None = None, float_digits: int | None = None) -> None:
    """Print ``figures`` one per line, names right-aligned; also write them to ``json_path`` as JSON if given.

    ``float_digits`` formats floats with that many decimals in the printout (the JSON keeps full precision)."""
    width = max(map(len, figures), default=0)
    for key, value in figures.items():
        shown = f"{value:.{float_digits}f}" if float_digits is not None and isinstance(value, float) else value
        print(f"{key:>{width}}: {shown}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(figures), f, indent=2)
