"""Security: headers on every answer, no inline code for the policy to allow, `check --deploy`
clean in production, HTTPS settings that loopback can turn off, rate-limited log-in and password
reset (failing open), CSRF on every form, saved searches private."""

from __future__ import annotations

import math
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from catalogue.models import Paper, SavedSearch

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR, "templates")
STATIC = Path(settings.BASE_DIR, "static")
PASSWORD = "a long passphrase"


@pytest.fixture
def ada():
    return User.objects.create_user("ada", "ada@example.org", PASSWORD)


@pytest.fixture
def paper():
    return Paper.objects.create(arxiv_id="2511.00003", title="Decoupling", abstract="Words.")


# --- headers -----------------------------------------------------------------------------------


def policy(response) -> dict[str, list[str]]:
    directives = [d.split() for d in response["Content-Security-Policy"].split(";") if d.strip()]
    return {name: values for name, *values in directives}


PAGES = ["/", "/?q=decoupling", "/papers/2511.00003/", "/topics/", "/accounts/login/"]
PAGES += ["/api/papers", "/feed/", "/admin/login/", "/papers/daily/2025-11-27/"]


@pytest.mark.parametrize("url", PAGES)
def test_every_answer_carries_the_security_headers(client, paper, url):
    response = client.get(url)
    assert response.status_code == 200
    csp = policy(response)
    assert csp["default-src"] == csp["script-src"] == csp["style-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'"]
    assert csp["object-src"] == csp["base-uri"] == csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]
    assert "geolocation=()" in response["Permissions-Policy"]


def test_a_page_served_from_the_page_cache_keeps_its_headers(client, paper, settings):
    settings.PAGE_CACHE_SECONDS = 60
    url = f"/?q=headers-{secrets.token_hex(4)}"
    first, second = client.get(url), client.get(url)
    assert first.status_code == second.status_code == 200
    for header in ("Content-Security-Policy", "Permissions-Policy", "X-Frame-Options"):
        assert second[header] == first[header]


# Inline code of any kind would need 'unsafe-inline' (or nonces, which cached pages cannot
# carry): none in the site's templates. Emails are not pages: their inline styles stay.
INLINE_CODE = {
    "inline script": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "event handler": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE),
    "style attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.IGNORECASE),
    "style element": re.compile(r"<style\b", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
}


def site_files() -> list[Path]:
    pages = [p for p in TEMPLATES.rglob("*.html") if "emails" not in p.parts]
    return pages + [p for p in STATIC.rglob("*") if p.suffix in (".html", ".js", ".svg")]


@pytest.mark.parametrize("kind", INLINE_CODE)
def test_templates_and_static_files_hold_no_inline_code(kind):
    files = site_files()
    assert len(files) > 20
    offenders = [str(p) for p in files if INLINE_CODE[kind].search(p.read_text())]
    assert offenders == []


def test_the_inline_code_detector_finds_each_kind():
    samples = {
        "inline script": "<script>alert(1)</script>",
        "event handler": '<img src="x.png" onerror="alert(1)">',
        "style attribute": '<p class="a" style="color: red">',
        "style element": "<style>p {}</style>",
        "javascript: URL": '<a href="javascript:alert(1)">',
    }
    assert {kind: bool(INLINE_CODE[kind].search(samples[kind])) for kind in samples} == {
        kind: True for kind in samples
    }
    assert not INLINE_CODE["inline script"].search('<script src="/static/x.js"></script>')


# --- production settings -----------------------------------------------------------------------

PRODUCTION = {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50)}
PRODUCTION["ALLOWED_HOSTS"] = "papers.example.org"


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``manage.py`` in a fresh process, with the test's environment plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in _SECURITY_ENV}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


# Variables of this process that would change what the child checks (the browser tests set
# DJANGO_ALLOW_ASYNC_UNSAFE, which `check --deploy` rightly refuses).
_SECURITY_ENV = {
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "DEBUG",
    "HTTPS_ONLY",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_COOKIES",
    "TRUST_X_FORWARDED_PROTO",
}
_SHOW = (
    "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS,"
    " s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER)"
)


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_is_https_only_behind_a_tls_proxy():
    result = manage("shell", "--no-imports", "-c", _SHOW, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    expected = "True 31536000 True True ('HTTP_X_FORWARDED_PROTO', 'https')"
    assert result.stdout.strip() == expected


@pytest.mark.parametrize(
    "env",
    [
        {**PRODUCTION, "HTTPS_ONLY": "0"},
        {"DEBUG": "1"},
        {  # each one on its own
            **PRODUCTION,
            "SECURE_SSL_REDIRECT": "0",
            "SECURE_HSTS_SECONDS": "0",
            "SECURE_COOKIES": "0",
            "TRUST_X_FORWARDED_PROTO": "0",
        },
    ],
)
def test_loopback_http_can_turn_https_off(env):
    result = manage("shell", "--no-imports", "-c", _SHOW, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False 0 False False None"


def test_https_redirects_plain_http_and_trusts_the_proxys_header(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = Client().get("/topics/")
    assert (response.status_code, response["Location"]) == (301, "https://testserver/topics/")
    response = Client().get("/topics/", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert response["Strict-Transport-Security"].startswith("max-age=3600")


# --- rate limits -------------------------------------------------------------------------------


def log_in(client: Client, username: str, password: str = "wrong", path="/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


@pytest.fixture
def small_limits(settings):
    settings.LOGIN_RATE_LIMITS = {"username": "3/15m", "ip": "5/15m"}
    settings.PASSWORD_RESET_RATE_LIMITS = {"email": "2/h", "ip": "4/h"}


def test_bad_log_ins_lock_the_name_with_a_clear_429(client, ada, small_limits):
    for _ in range(3):
        response = log_in(client, "ada")
        assert response.status_code == 200 and response.context["form"].errors
    locked = log_in(client, "Ada", PASSWORD)  # the right password, too late; any case
    assert locked.status_code == 429
    wait = int(locked["Retry-After"])
    assert 0 < wait <= 15 * 60 + 5
    text = locked.content.decode()
    assert "Too many log-in attempts for this account or from your network." in text
    # The window is the clock's: near its end the wait is a minute, said in the singular.
    minutes = math.ceil(wait / 60)
    assert f"Try again in {minutes} minute{'s' if minutes != 1 else ''}." in text
    assert "_auth_user_id" not in client.session


def test_a_lock_lifts_when_its_window_ends(client, ada, settings, rate_limit_clock):
    settings.LOGIN_RATE_LIMITS = {"username": "3/15m"}
    for _ in range(3):
        assert log_in(client, "ada").status_code == 200
    wait = int(log_in(client, "ada", PASSWORD)["Retry-After"])
    rate_limit_clock.now += wait - 1
    assert log_in(client, "ada", PASSWORD).status_code == 429
    rate_limit_clock.now += 1  # the next window counts afresh
    assert log_in(client, "ada", PASSWORD).status_code == 302
    assert client.session["_auth_user_id"] == str(ada.pk)


def test_the_default_limit_locks_a_name_after_ten_attempts(client, ada):
    statuses = [log_in(client, "ada").status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]


def test_many_names_from_one_address_lock_the_address(client, ada, small_limits):
    statuses = [log_in(client, f"guess{i}").status_code for i in range(6)]
    assert statuses == [200] * 5 + [429]
    other = Client(REMOTE_ADDR="192.0.2.7")  # another reader is not locked out
    assert log_in(other, "ada", PASSWORD).status_code == 302


def test_the_admin_log_in_is_limited_too(client, small_limits):
    User.objects.create_superuser("root", "root@example.org", PASSWORD)
    statuses = [log_in(client, "root", path="/admin/login/").status_code for _ in range(4)]
    assert statuses == [200] * 3 + [429]
    assert log_in(client, "root", PASSWORD, path="/admin/login/").status_code == 429


def test_password_resets_are_limited_per_address(client, ada, small_limits):
    statuses = [
        client.post("/accounts/password_reset/", {"email": email}).status_code
        for email in ("ada@example.org", " ADA@example.org", "ada@example.org")
    ]
    assert statuses == [302, 302, 429]
    assert len(mail.outbox) == 2
    assert (
        "Too many password reset requests"
        in client.post("/accounts/password_reset/", {"email": "ada@example.org"}).content.decode()
    )


def test_password_resets_are_limited_per_address_of_the_client(client, ada, small_limits):
    statuses = [
        client.post("/accounts/password_reset/", {"email": f"n{i}@example.org"}).status_code
        for i in range(5)
    ]
    assert statuses == [302] * 4 + [429]


def test_sign_ups_are_limited_per_address_of_the_client(client, settings):
    settings.SIGNUP_RATE_LIMITS = {"ip": "2/h"}

    def sign_up(i):
        data = {"username": f"new{i}", "email": f"new{i}@example.org"}
        data |= {"password1": "a long pass phrase 7", "password2": "a long pass phrase 7"}
        response = Client().post("/accounts/signup/", data)  # a fresh session each time
        return response.status_code

    assert [sign_up(i) for i in range(3)] == [302, 302, 429]
    assert User.objects.filter(username__startswith="new").count() == 2


UNREACHABLE_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:9/0",  # the discard port: nothing answers
    }
}


def test_limits_fail_open_when_the_cache_is_down(client, ada, settings, small_limits):
    settings.CACHES = UNREACHABLE_REDIS
    for _ in range(4):  # over the limit, but nothing can count
        assert log_in(client, "ada").status_code == 200
    assert log_in(client, "ada", PASSWORD).status_code == 302
    statuses = {
        client.post("/accounts/password_reset/", {"email": "ada@example.org"}).status_code
        for _ in range(3)
    }
    assert statuses == {302}


# --- CSRF --------------------------------------------------------------------------------------

# The one view that takes a POST without a token: RFC 8058 one-click unsubscribe, which mail
# providers POST without a session (its unguessable token is the authorisation).
CSRF_EXEMPT = {"saved-unsubscribe"}
# Values for the URL parameters of every pattern: CSRF is checked before the view runs, so the
# objects need not exist.
SAMPLE_KWARGS = {
    "app_label": "catalogue",
    "object_id": "1",
    "content_type_id": "1",
    "pk": "1",
    "id": "1",
    "slug": "a-slug",
    "day": "2025-11-27",
    "week": "2025-W48",
    "month": "2025-11",
    "uidb64": "MQ",
    "token": "set-password",
    "url": "anything/",
}


def every_url(resolver=None, namespace="", groups=frozenset()):
    """(name, callback, URL) of every pattern of the site, the admin's included."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        inner_groups = groups | set(pattern.pattern.regex.groupindex)
        if isinstance(pattern, URLResolver):
            ns = pattern.namespace
            inner = f"{namespace}:{ns}" if namespace and ns else (ns or namespace)
            yield from every_url(pattern, inner, inner_groups)
            continue
        assert isinstance(pattern, URLPattern)
        if pattern.name is None:
            yield None, pattern.callback, None
            continue
        name = f"{namespace}:{pattern.name}".lstrip(":")
        kwargs = {group: SAMPLE_KWARGS[group] for group in inner_groups}
        yield name, pattern.callback, reverse(name, kwargs=kwargs)


def test_every_url_refuses_a_post_without_the_csrf_token(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)  # past every login_required: CSRF is what answers
    checked, exempt = [], set()
    for name, callback, url in every_url():
        if getattr(callback, "csrf_exempt", False):
            exempt.add(name)
            continue
        if url is None:  # unnamed: the admin's log-in (tested below) and catch-all
            continue
        response = client.post(url, {"name": "x", "email": "e@example.org", "alerts": "off"})
        assert response.status_code == 403, url
        assert b"CSRF verification failed" in response.content, url
        checked.append(name)
    assert exempt == CSRF_EXEMPT
    assert len(checked) > 40 and "login" in checked and "saved-create" in checked
    assert "admin:catalogue_paper_change" in checked and "admin:catalogue_paper_merge" in checked
    for path in ("/admin/login/", "/admin/catalogue/nothing-here/"):
        assert client.post(path, {}).status_code == 403


def test_the_csrf_failure_page_is_in_the_site_layout_without_inline_style(ada):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    assert response.status_code == 403
    page = response.content.decode()
    assert "CSRF verification failed" in page and 'class="site"' in page
    assert "<style" not in page and "style=" not in page


def test_every_post_form_in_the_templates_carries_the_token():
    form = re.compile(r"<form\b[^>]*method=\"post\"[^>]*>(.*?)</form>", re.DOTALL | re.IGNORECASE)
    without = []
    for path in TEMPLATES.rglob("*.html"):
        for body in form.findall(path.read_text()):
            # Django templates (admin) and Jinja2 ones (templates/jinja2/, the reader pages).
            if "{% csrf_token %}" not in body and "{{ csrf_input }}" not in body:
                without.append(path.relative_to(TEMPLATES).as_posix())
    # Posts to the exempt one-click unsubscribe (above).
    assert without == ["jinja2/catalogue/saved/unsubscribe.html"]


# --- saved searches stay private ---------------------------------------------------------------


def test_unsubscribe_tokens_are_long_random_and_unrelated(ada):
    searches = [
        SavedSearch.objects.create(user=ada, name=f"S{i}", query=f"q=w{i}") for i in range(20)
    ]
    tokens = [s.unsubscribe_token for s in searches]
    assert len(set(tokens)) == len(tokens)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43,}", token) for token in tokens)  # 256 bits
    client = Client()
    token = tokens[0]
    for guess in (token[:-1], token.upper(), str(searches[0].pk), token + "A"):
        if guess != token:
            assert client.get(reverse("saved-unsubscribe", args=[guess])).status_code == 404


def test_another_reader_sees_none_of_my_searches(client, ada):
    SavedSearch.objects.create(user=ada, name="My secret topic", query="q=secret")
    bob = User.objects.create_user("bob", "bob@example.org", PASSWORD)
    client.force_login(bob)
    page = client.get("/saved/").content.decode()
    assert "My secret topic" not in page and "secret" not in page
