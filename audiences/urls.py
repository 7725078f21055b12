from django.urls import path

from audiences import views

app_name = "audiences"

urlpatterns = [
    path("", views.audience_list, name="list"),
    path("new/", views.audience_new, name="new"),
    path("<int:pk>/", views.audience_detail, name="detail"),
    path("<int:pk>/edit/", views.audience_edit, name="edit"),
    path("<int:pk>/delete/", views.audience_delete, name="delete"),
    path("<int:pk>/refresh/", views.audience_refresh, name="refresh"),
    path("<int:pk>/entries/", views.audience_entries, name="entries"),
    path("<int:pk>/connections/new/", views.connection_add, name="connection_add"),
    path("<int:pk>/connections/<int:connection_pk>/edit/", views.connection_edit, name="connection_edit"),
    path("<int:pk>/connections/<int:connection_pk>/delete/", views.connection_delete, name="connection_delete"),
]
