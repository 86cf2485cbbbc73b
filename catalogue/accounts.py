"""Reader accounts: sign-up here; log in, log out and password reset are Django's auth views."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme


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
