"""PostgreSQL URLs <-> Django DATABASES entries (TCP hosts and socket directories alike)."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, unquote, urlsplit

from catalogue.env import ConfigError, env_int


def database_from_url(url: str) -> dict:
    """``postgresql://user:pass@host:port/name?host=/socket/dir`` -> a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ConfigError("DATABASE_URL must name a database: postgresql://…/NAME")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": query.pop("host", None) or parts.hostname or "",
        "PORT": str(query.pop("port", None) or parts.port or ""),
        # Persistent connections: a page costs a few sub-millisecond queries, a connect ~2 ms.
        # Kept ten minutes, not one: a new server process (backend) pays again for its catalog
        # caches and for its first touch of each shared buffer it reads (a page fault each).
        # At a million papers a page on a new connection took 1.4-2.6x as long as on the same
        # connection again (paper page 18.6 against 7.3 ms), and 60 pages on a new backend
        # 23 % longer than after 200 other pages (docs/benchmarks.md, twenty-first pass).
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 600),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": query,
        "TEST": {"NAME": f"test_{name}"},
    }


def url_from_settings(settings_dict: dict, name: str | None = None) -> str:
    """A libpq URL for a DATABASES entry, optionally for another database on the same server."""
    user = quote(settings_dict["USER"] or "")
    password = f":{quote(settings_dict['PASSWORD'])}" if settings_dict["PASSWORD"] else ""
    host = settings_dict["HOST"] or ""
    port = settings_dict["PORT"] or ""
    database = quote(name or settings_dict["NAME"])
    if host.startswith("/"):
        return f"postgresql://{user}{password}@/{database}?host={quote(host)}&port={port or 5432}"
    return f"postgresql://{user}{password}@{host}{':' + port if port else ''}/{database}"
