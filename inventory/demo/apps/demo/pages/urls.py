from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("echo/", views.echo, name="echo"),
    path("words/<str:word>/", views.words, name="words"),
    path("go/", views.go, name="go"),
    path("form/", views.form, name="form"),
    path("upload/", views.upload, name="upload"),
    path("ping/", views.ping, name="ping"),
    path("sleep/", views.sleep, name="sleep"),
]
