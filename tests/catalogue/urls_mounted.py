"""The catalogue's URLs under /mounted/ (test_paths.py)."""

from django.urls import include, path

urlpatterns = [path("mounted/", include("catalogue.urls"))]
