"""The monitoring report (being built: a placeholder that shows the result as JSON)."""

from __future__ import annotations

import html
import json
from typing import Any


def render(result: dict[str, Any]) -> str:
    return f"<!doctype html><pre>{html.escape(json.dumps(result, indent=1))}</pre>"
