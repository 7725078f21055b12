from django.contrib.auth.decorators import login_required, permission_required
from rest_framework.permissions import DjangoModelPermissions


def page_permission(app_label: str):
    """For server-rendered pages: `page_permission("connectors")("view_connector")` decorates a view so anonymous
    users go to the login page and signed-in users without the permission get 403."""

    def perm(codename: str):
        def decorate(view):
            return login_required(permission_required(f"{app_label}.{codename}", raise_exception=True)(view))

        return decorate

    return perm


class ModelPermissionsWithView(DjangoModelPermissions):
    """Django model permissions, with reads requiring the `view` permission.

    Anonymous users are refused; a "Viewer" can read; changes need add/change/delete.
    """

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }
