"""Tables of the load test and the sweep (markdown, printed and appended to the docs)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from tests.bench.benchmark import percentile


@dataclass
class Request:
    kind: str  # the page class (load test) or the sweep's kind
    ms: float
    status: int  # 0: no answer (connection error, timeout)
    cache_hit: bool = False


def load_table(requests: list[Request], seconds: float) -> str:
    """Per page class and overall: requests, failures (not 200), page-cache hits, requests/s,
    p50/p95/p99/max in milliseconds."""
    lines = [
        "| page class | requests | failures | cache hits | requests/s | p50 ms | p95 ms "
        "| p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, rows in [*_by_kind(requests), ("**all**", requests)]:
        times = [r.ms for r in rows]
        failures = sum(r.status != 200 for r in rows)
        hits = sum(r.cache_hit for r in rows)
        lines.append(
            f"| {kind} | {len(rows):,} | {failures} | {hits} | {len(rows) / seconds:.1f} "
            f"| {_ms(times, 50)} | {_ms(times, 95)} | {_ms(times, 99)} | {_ms(times, 100)} |"
        )
    return "\n".join(lines)


def sweep_table(requests: list[Request]) -> str:
    """Per kind: requests, errors (5xx or no answer), the statuses seen, p50/p95/max ms."""
    lines = [
        "| kind | requests | errors | statuses | p50 ms | p95 ms | max ms |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for kind, rows in [*_by_kind(requests), ("**all**", requests)]:
        times = [r.ms for r in rows]
        statuses = Counter(r.status for r in rows)
        seen = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
        lines.append(
            f"| {kind} | {len(rows):,} | {errors(rows)} | {seen} | {_ms(times, 50)} "
            f"| {_ms(times, 95)} | {_ms(times, 100)} |"
        )
    return "\n".join(lines)


def errors(requests: list[Request]) -> int:
    """Answers a crawler must never get: server errors and no answer at all."""
    return sum(r.status == 0 or r.status >= 500 for r in requests)


def _by_kind(requests: list[Request]) -> list[tuple[str, list[Request]]]:
    kinds: dict[str, list[Request]] = defaultdict(list)
    for request in requests:
        kinds[request.kind].append(request)
    return list(kinds.items())


def _ms(values: list[float], pct: float) -> str:
    return f"{percentile(values, pct):,.0f}" if values else "–"
