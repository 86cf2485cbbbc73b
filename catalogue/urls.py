from django.contrib import admin
from django.urls import include, path, register_converter

from catalogue import accounts, converters, views

# Path segments that cannot name a page are a 404 before any view runs (catalogue.converters).
register_converter(converters.DayConverter, "day")
register_converter(converters.IsoWeekConverter, "isoweek")
register_converter(converters.MonthConverter, "month")
register_converter(converters.PaperSlugConverter, "paper")

urlpatterns = [
    path("", views.paper_list, name="paper-list"),
    path("papers/daily/<day:day>/", views.day_page, name="day-page"),
    path("papers/week/<isoweek:week>/", views.week_page, name="week-page"),
    path("papers/month/<month:month>/", views.month_page, name="month-page"),
    path("papers/<paper:slug>/", views.paper_detail, name="paper-detail"),
    path("topics/", views.topic_list, name="topic-list"),
    path("topics/<slug:slug>/", views.topic_detail, name="topic-detail"),
    path("", include("catalogue.urls_readers")),
    # The admin's log-in under the readers' rate limits (before admin.site.urls: first match).
    path("admin/login/", accounts.limit_logins(admin.site.login)),
    path("admin/", admin.site.urls),
]
