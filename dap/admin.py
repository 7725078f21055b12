"""Admin base classes shared by the apps."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the platform only: listed for operators, never added or edited here. Deleting follows the
    model permissions (deleting a configuration in the admin cascades to them)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ListOnlyAdmin(ReadOnlyAdmin):
    """Read-only, and not deleted here either."""

    def has_delete_permission(self, request, obj=None):
        return False
