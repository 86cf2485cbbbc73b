"""Reading a Source's ``params``: what an admin typed into a JSON field, so check it all.

Every ``fetch_pages`` validates its params before the first request, and a mistake raises
``ValueError`` naming the parameter and what would have been accepted: a typo must fail the
run at once, not quietly fetch the wrong listing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping

# Relative dates, so a scheduled Source can say "yesterday" instead of a date that goes stale.
_RELATIVE_DAYS = {"today": 0, "yesterday": 1}


def check_keys(params: Mapping[str, object], allowed: Collection[str], source: str) -> None:
    if not isinstance(params, Mapping):
        raise ValueError(f"{source} params must be an object, not {type(params).__name__}")
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"unknown {source} param {unknown[0]!r} (accepted: {known})")


def text_param(params: Mapping[str, object], name: str) -> str | None:
    """A non-blank string, or None when the param is absent."""
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, not {value!r}")
    return value.strip()


def choice_param(
    params: Mapping[str, object], name: str, choices: Collection[str], default: str | None = None
) -> str | None:
    value = text_param(params, name)
    if value is None:
        return default
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def int_param(params: Mapping[str, object], name: str, default: int, low: int, high: int) -> int:
    """An int in [low, high]; a string of digits counts too (JSON fields get typed by hand)."""
    value = params.get(name, default)
    # bool is an int subclass: `true` in the JSON is a mistake, not 1.
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return value


def date_param(params: Mapping[str, object], name: str, today: dt.date) -> dt.date | None:
    """An ISO date, or "today"/"yesterday" counted from ``today``; None when absent."""
    value = text_param(params, name)
    if value is None:
        return None
    if value.lower() in _RELATIVE_DAYS:
        return today - dt.timedelta(days=_RELATIVE_DAYS[value.lower()])
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{name} must be a date (YYYY-MM-DD, today or yesterday), not {value!r}"
        ) from None
