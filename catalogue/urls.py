from django.contrib import admin
from django.urls import include, path

from catalogue import accounts, views

urlpatterns = [
    path("", views.paper_list, name="paper-list"),
    path("papers/daily/<str:day>/", views.day_page, name="day-page"),
    path("papers/week/<str:week>/", views.week_page, name="week-page"),
    path("papers/month/<str:month>/", views.month_page, name="month-page"),
    path("papers/<path:slug>/", views.paper_detail, name="paper-detail"),
    path("topics/", views.topic_list, name="topic-list"),
    path("topics/<slug:slug>/", views.topic_detail, name="topic-detail"),
    path("", include("catalogue.urls_readers")),
    # The admin's log-in under the readers' rate limits (before admin.site.urls: first match).
    path("admin/login/", accounts.limit_logins(admin.site.login)),
    path("admin/", admin.site.urls),
]
