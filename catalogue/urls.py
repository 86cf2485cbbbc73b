from django.contrib import admin
from django.urls import path

from catalogue import views

urlpatterns = [
    path("", views.paper_list, name="paper-list"),
    path("papers/<path:slug>/", views.paper_detail, name="paper-detail"),
    path("admin/", admin.site.urls),
]
