"""Reader accounts: sign up, log in, log out, and reset a forgotten password by email."""

import re

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def ada():
    return User.objects.create_user("ada", "ada@example.org", PASSWORD)


def sign_up(client, **overrides):
    data = {
        "username": "grace",
        "email": "grace@example.org",
        "password1": PASSWORD,
        "password2": PASSWORD,
        **overrides,
    }
    return client.post(reverse("signup"), data)


def logged_in_username(client) -> str | None:
    user = client.get(reverse("paper-list")).context["user"]
    return user.username if user.is_authenticated else None


def test_pages_use_the_site_layout(client):
    for name in ("signup", "login", "password_reset"):
        response = client.get(reverse(name))
        assert "base.html" in [template.name for template in response.templates]
        assert "csrfmiddlewaretoken" in response.content.decode()


def test_sign_up_creates_the_account_and_logs_in(client):
    response = sign_up(client)
    assert response.status_code == 302 and response.url == "/"
    user = User.objects.get(username="grace")
    assert user.email == "grace@example.org" and user.check_password(PASSWORD)
    assert logged_in_username(client) == "grace"


def test_sign_up_continues_to_next_but_never_off_site(client):
    assert sign_up(client, next="/saved/").url == "/saved/"
    client.logout()
    response = sign_up(client, username="eve", email="eve@example.org", next="https://evil.test/")
    assert response.url == "/"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"email": ""}, "This field is required."),
        ({"email": "not-an-address"}, "Enter a valid email address."),
        ({"email": "ADA@example.org"}, "An account with this email address already exists."),
        ({"password2": "something else"}, "didn’t match"),
        ({"password1": "12345678", "password2": "12345678"}, "too common"),
        ({"username": "ada"}, "A user with that username already exists."),
    ],
)
def test_sign_up_shows_what_is_wrong(client, ada, overrides, message):
    response = sign_up(client, **overrides)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not User.objects.filter(username="grace").exists()


def test_log_in_and_out(client, ada):
    response = client.post(reverse("login"), {"username": "ada", "password": PASSWORD})
    assert response.status_code == 302 and response.url == "/"
    assert logged_in_username(client) == "ada"
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert logged_in_username(client) is None


def test_log_in_returns_to_next(client, ada):
    data = {"username": "ada", "password": PASSWORD, "next": "/saved/"}
    assert client.post(reverse("login"), data).url == "/saved/"


def test_wrong_password_is_a_form_error(client, ada):
    response = client.post(reverse("login"), {"username": "ada", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert logged_in_username(client) is None


def test_log_out_is_post_only(client, ada):
    client.force_login(ada)
    assert client.get(reverse("logout")).status_code == 405
    assert logged_in_username(client) == "ada"


def test_password_reset_by_email(client, ada):
    response = client.post(reverse("password_reset"), {"email": "ada@example.org"})
    assert response.url == reverse("password_reset_done")
    (email,) = mail.outbox
    assert email.to == ["ada@example.org"]
    assert email.subject == "Reset your password on the paper catalogue"
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", email.body).group(1)

    form_url = client.get(link).url  # Django swaps the token for a session, then redirects
    new_password = "a brand new passphrase"
    response = client.post(form_url, {"new_password1": new_password, "new_password2": new_password})
    assert response.url == reverse("password_reset_complete")
    ada.refresh_from_db()
    assert ada.check_password(new_password)
    assert client.get(link).context["validlink"] is False  # a link works once


def test_the_password_reset_mail_is_plain_text_with_the_username_as_it_is(client):
    """Its template turns autoescaping off: a plain-text body, where "&amp;" would be wrong.
    Nothing of it may reach HTML: there is no HTML part (and usernames cannot hold markup)."""
    User.objects.create_user("o'neil+ml@x", "oneil@example.org", "a long passphrase here")
    client.post(reverse("password_reset"), {"email": "oneil@example.org"})
    (email,) = mail.outbox
    assert email.body.startswith("Hello o'neil+ml@x,\n")
    assert getattr(email, "alternatives", []) == [] and email.content_subtype == "plain"


def test_password_reset_for_an_unknown_address_says_nothing_and_sends_nothing(client, ada):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.org"})
    assert response.url == reverse("password_reset_done")
    assert mail.outbox == []
