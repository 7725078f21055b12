"""Error reports (Django's technical 500 page and the mails to ADMINS) without secrets.

`SecretSafeExceptionReporterFilter` (settings.DEFAULT_EXCEPTION_REPORTER_FILTER) is Django's
SafeExceptionReporterFilter made stricter:
- always active, DEBUG included (Django's is off under DEBUG, so a developer's error page showed typed secrets);
- frame variables are cleansed like settings: a variable, or a key at any depth of a dict, list or tuple, whose name
  looks sensitive (API, AUTH, TOKEN, KEY, SECRET, PASS, SIGNATURE, COOKIE, SESSION, CSRF, UUID) shows as stars;
- serializers (their repr carries the request body they were given) show as their class name only, dataclass
  instances (such as a partner client's ClientConfig) as their cleansed fields.
Views that take secrets are also marked `sensitive_post_parameters`, and the connector services
`sensitive_variables`, so their frames show no variable at all.
"""

from __future__ import annotations

import dataclasses
import re

from django.utils.regex_helper import _lazy_re_compile
from django.views.debug import SafeExceptionReporterFilter

_MAX_DEPTH = 6


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = _lazy_re_compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|COOKIE|SESSION|CSRF|UUID|CREDENTIAL", flags=re.I
    )

    def is_active(self, request) -> bool:
        return True

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [(name, self._cleanse(name, value)) for name, value in variables]

    def _cleanse(self, name, value, depth: int = 0):
        if isinstance(value, str) and value == self.cleansed_substitute:
            return value
        if isinstance(name, str) and name and self.hidden_settings.search(name):
            return self.cleansed_substitute
        if depth >= _MAX_DEPTH:
            return value
        if isinstance(value, dict):
            return {k: self._cleanse(k, v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self._cleanse("", v, depth + 1) for v in value]
        if type(value) is tuple:
            return tuple(self._cleanse("", v, depth + 1) for v in value)
        from rest_framework.serializers import BaseSerializer

        if isinstance(value, BaseSerializer):
            return f"<{type(value).__name__} (cleansed)>"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
            return f"{type(value).__name__}({self._cleanse('', fields, depth + 1)!r})"
        return value
