"""The catalogue tests need no database, but Django's validators translate their messages: set Django up once.

Harmless when pytest-django is active (it has already set Django up).
"""

import os

import django
from django.apps import apps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dap.settings")
if not apps.ready:
    django.setup()
