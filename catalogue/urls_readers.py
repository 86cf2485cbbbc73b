"""URLs of reader accounts, saved searches, feeds and the JSON API."""

from django.contrib.auth import views as auth_views
from django.urls import path

from catalogue import accounts, api, saved
from catalogue.feeds import paper_feed

account_urls = [
    path("accounts/signup/", accounts.limit_signups(accounts.signup), name="signup"),
    path("accounts/login/", accounts.limit_logins(auth_views.LoginView.as_view()), name="login"),
    # Django's LogoutView accepts POST only: a link (or a prefetching browser) cannot log out.
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_reset/",
        accounts.limit_password_resets(
            # A plain-text body (no HTML part), autoescaping off: named .txt, not Django's
            # default .html, so that nobody takes it for an HTML template.
            auth_views.PasswordResetView.as_view(
                email_template_name="registration/password_reset_email.txt"
            )
        ),
        name="password_reset",
    ),
    path(
        "accounts/password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]

saved_search_urls = [
    path("saved/", saved.saved_list, name="saved-list"),
    path("saved/new/", saved.saved_create, name="saved-create"),
    path("saved/<int:pk>/edit/", saved.saved_edit, name="saved-edit"),
    path("saved/<int:pk>/alerts/", saved.saved_alerts, name="saved-alerts"),
    path("saved/<int:pk>/delete/", saved.saved_delete, name="saved-delete"),
    # Tokens are secrets.token_urlsafe(): a slug; anything else (a NUL byte) names no search.
    path("saved/unsubscribe/<slug:token>/", saved.unsubscribe, name="saved-unsubscribe"),
]

urlpatterns = [
    *account_urls,
    *saved_search_urls,
    path("feed/", paper_feed, name="feed"),
    path("api/papers", api.papers, name="api-papers"),
]
