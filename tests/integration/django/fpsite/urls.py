from __future__ import annotations

from django.urls import path
from fpsite import views

urlpatterns = [
    path("session", views.session),
    path("dirty", views.dirty),
    path("create-then-fail", views.create_then_fail),
]
