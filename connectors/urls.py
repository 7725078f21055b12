from django.urls import path

from connectors import views

app_name = "connectors"

urlpatterns = [
    path("", views.connector_list, name="list"),
    path("new/", views.catalogue, name="catalogue"),
    path("new/<slug:partner_key>/", views.connector_new, name="new"),
    path("<int:pk>/", views.connector_detail, name="detail"),
    path("<int:pk>/edit/", views.connector_edit, name="edit"),
    path("<int:pk>/deactivate/", views.connector_deactivate, name="deactivate"),
    path("<int:pk>/activate/", views.connector_activate, name="activate"),
    path("<int:pk>/delete/", views.connector_delete, name="delete"),
    path("<int:pk>/configs/new/", views.config_add, name="config_add"),
    path("<int:pk>/configs/<int:config_pk>/edit/", views.config_edit, name="config_edit"),
    path("<int:pk>/configs/<int:config_pk>/delete/", views.config_delete, name="config_delete"),
    path("<int:pk>/configs/<int:config_pk>/test/", views.config_test, name="config_test"),
    path("<int:pk>/configs/<int:config_pk>/resume/", views.config_resume, name="config_resume"),
    path("<int:pk>/replay/", views.connector_replay, name="replay"),
]
