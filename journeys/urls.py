from django.urls import path

from journeys import views

app_name = "journeys"

urlpatterns = [
    path("", views.journey_list, name="list"),
    path("new/", views.journey_new, name="new"),
    path("<int:pk>/", views.journey_detail, name="detail"),
    path("<int:pk>/edit/", views.journey_edit, name="edit"),
    path("<int:pk>/publish/", views.journey_publish, name="publish"),
    path("<int:pk>/pause/", views.journey_pause, name="pause"),
    path("<int:pk>/resume/", views.journey_resume, name="resume"),
    path("<int:pk>/stop/", views.journey_stop, name="stop"),
    path("<int:pk>/delete/", views.journey_delete, name="delete"),
]
