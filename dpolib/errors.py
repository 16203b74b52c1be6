"""What dpolib's error messages share: a bad value quoted short enough to read."""

from __future__ import annotations

from typing import Any

LIMIT = 200


def describe(value: Any, limit: int = LIMIT) -> str:
    """repr(value), cut to about `limit` characters with its full length said.

    A bad character in a million-character text should not make a million-character
    message, and a value whose repr fails should not hide the error being raised."""
    try:
        text = repr(value)
    except Exception as err:  # any failure: quote the type instead
        return f"<{type(value).__name__} object (repr failed: {type(err).__name__})>"
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}... ({len(text)} characters)"
