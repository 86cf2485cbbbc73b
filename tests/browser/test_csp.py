"""The Content-Security-Policy in real Chromium: reader pages and the admin work under it with no
violation reported, and an injected inline script is refused."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from catalogue.models import Paper
from tests.admin_support import seed_catalogue

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-test-password-only"

# Runs before any script of each page (Playwright injects it outside the page's policy).
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


class Watcher:
    """Console errors and CSP violation events of every page a test opens."""

    def __init__(self, page):
        self.page = page
        self.console: list[str] = []
        page.add_init_script(WATCH_VIOLATIONS)
        page.on("console", self._console)

    def _console(self, message) -> None:
        url = message.location.get("url", "")
        # The browser asks for /favicon.ico on its own; the site has none.
        if message.type == "error" and not url.endswith("/favicon.ico"):
            self.console.append(f"{message.text} ({url})")

    def open(self, url: str) -> None:
        response = self.page.goto(url)
        assert response.status == 200, url
        assert "script-src 'self'" in response.headers["content-security-policy"]
        self.assert_clean(url)

    def assert_clean(self, where: str) -> None:
        violations = self.page.evaluate("window.__violations")
        assert violations == [], where
        assert self.console == [], where


@pytest.fixture
def watcher(page):
    return Watcher(page)


@pytest.fixture
def catalogue():
    seed_catalogue()
    return Paper.objects.order_by("pk").first()


def test_reader_pages_run_under_the_policy_without_a_violation(live_server, watcher, catalogue):
    for path in (
        "/",
        "/?q=decoupling",
        "/?q=%22linear+attention%22&sort=upvotes",
        catalogue.get_absolute_url(),
        "/topics/",
        "/papers/daily/2025-12-24/",
        "/accounts/login/",
        "/accounts/signup/",
    ):
        watcher.open(f"{live_server.url}{path}")


def test_an_injected_inline_script_is_refused(live_server, watcher, catalogue):
    watcher.open(f"{live_server.url}/")
    ran = watcher.page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.__ran = true";
          document.body.appendChild(script);
          return window.__ran === true;
        }"""
    )
    assert not ran
    violations = watcher.page.evaluate("window.__violations")
    assert [v.split()[0] for v in violations] == ["script-src-elem"]
    assert any("Content Security Policy" in text for text in watcher.console)


def test_the_admin_works_under_the_policy(live_server, watcher, catalogue):
    User.objects.create_superuser("editor", "editor@example.org", PASSWORD)
    page = watcher.page
    watcher.open(f"{live_server.url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
    watcher.assert_clean("log-in")

    # The change list's actions (JavaScript: "select all" shows the count), search, filters.
    watcher.open(f"{live_server.url}/admin/catalogue/paper/?q=decoupling")
    page.locator("#action-toggle").check()
    assert "selected" in page.locator(".action-counter").inner_text()
    watcher.assert_clean("change list")

    # A change form with a collapsed fieldset (JavaScript opens it) and inlines.
    watcher.open(f"{live_server.url}/admin/catalogue/paper/{catalogue.pk}/change/")
    page.locator("summary", has_text="Source record").click()
    assert page.get_by_label("Journal ref").is_visible()
    watcher.assert_clean("paper change form")

    # Prepopulated slug: the admin's JavaScript fills it as the name is typed.
    watcher.open(f"{live_server.url}/admin/catalogue/topic/add/")
    page.get_by_label("Name").press_sequentially("Linear attention")
    assert page.get_by_label("Slug").input_value() == "linear-attention"
    watcher.assert_clean("topic form")

    for path in ("/admin/catalogue/paper/duplicates/", "/admin/ingest/ingestrun/"):
        watcher.open(f"{live_server.url}{path}")
