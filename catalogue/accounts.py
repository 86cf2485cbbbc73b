"""Reader accounts: sign-up here; log in, log out and password reset are Django's auth views,
with rate limits on log-in (the admin's too) and password reset."""

from __future__ import annotations

import logging
import math
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django_ratelimit.core import get_usage

logger = logging.getLogger(__name__)


class SignupForm(UserCreationForm):
    """Username, email and password: the email is where password resets and digests go."""

    email = forms.EmailField(
        max_length=254,
        help_text="For password resets and the digests of your saved searches.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self):
        email = self.cleaned_data["email"]
        # One account per address: a password reset for a shared address would be ambiguous.
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email address already exists.")
        return email


def signup(request):
    """Create an account, log its owner in and continue where they were going."""
    next_url = _safe_next(request)
    if request.user.is_authenticated:
        return redirect(next_url)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(next_url)
    return render(request, "registration/signup.html", {"form": form, "next": next_url})


def _safe_next(request) -> str:
    """The ``next`` parameter when it points into this site, else the default landing page."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    # Only a path: redirect() takes a bare word ("next=0") for a URL name (NoReverseMatch, a 500).
    return candidate if allowed and candidate.startswith("/") else settings.LOGIN_REDIRECT_URL


# --- rate limits -------------------------------------------------------------------------------
# Log-in and password-reset attempts are counted in the cache (django-ratelimit's fixed windows)
# per submitted name or address and per client IP, successful or not: counting before the
# password is checked is what stops a burst of parallel guesses. Over a limit the form is not
# processed: the answer is 429 with a plain message. A cache that fails lets everyone through:
# locking every reader out because Redis is down would be worse than an unthrottled minute.


def _posted(field: str):
    """A rate-limit key: the submitted value, trimmed and lower-cased (Ada and ada are one)."""

    def key(group, request) -> str:
        return request.POST.get(field, "").strip().lower()

    return key


# The keys each rate setting names; "ip" is django-ratelimit's client address
# (settings.RATELIMIT_IP_META_KEY).
LOGIN_KEYS = {"ip": "ip", "username": _posted("username")}
PASSWORD_RESET_KEYS = {"ip": "ip", "email": _posted("email")}


def _seconds_limited(request, group: str, keys: dict, rates: dict[str, str]) -> int:
    """Count this attempt under every key; seconds until all allow it again (0: allowed)."""
    wait = 0
    for name, rate in rates.items():
        try:
            usage = get_usage(
                request, group=f"{group}:{name}", key=keys[name], rate=rate, increment=True
            )
        except Exception:  # any cache failure: fail open (see above)
            logger.warning("rate limit %s:%s not checked: cache failed", group, name, exc_info=True)
            continue
        if usage and usage["should_limit"]:
            # The window's last second is still its own (time_left 0): the next starts after it.
            wait = max(wait, usage["time_left"] + 1)
    return wait


def rate_limited(group: str, keys: dict, setting: str, message: str):
    """Wrap a view: a POST over one of ``settings.<setting>``'s rates is a 429 page."""

    def decorate(view):
        @wraps(view)
        def limited_view(request, *args, **kwargs):
            if request.method == "POST":
                wait = _seconds_limited(request, group, keys, getattr(settings, setting))
                if wait:
                    return _too_many(request, message, wait)
            return view(request, *args, **kwargs)

        return limited_view

    return decorate


def _too_many(request, message: str, wait: int):
    minutes = math.ceil(wait / 60)
    context = {"message": message, "minutes": minutes}
    response = render(request, "registration/too_many_attempts.html", context, status=429)
    response["Retry-After"] = str(wait)
    return response


limit_logins = rate_limited(
    "login",
    LOGIN_KEYS,
    "LOGIN_RATE_LIMITS",
    "Too many log-in attempts for this account or from your network.",
)
limit_signups = rate_limited(
    "signup",
    {"ip": "ip"},
    "SIGNUP_RATE_LIMITS",
    "Too many accounts created from your network.",
)
limit_password_resets = rate_limited(
    "password-reset",
    PASSWORD_RESET_KEYS,
    "PASSWORD_RESET_RATE_LIMITS",
    "Too many password reset requests for this address or from your network.",
)
