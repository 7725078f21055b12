"""Page and admin forms for journeys: shapes only; the services validate and write."""

import json

from django import forms

from journeys.api.serializers import DEFINITION_HELP


class DefinitionField(forms.CharField):
    """The definition as JSON text."""

    widget = forms.Textarea(
        attrs={"rows": 18, "class": "code", "spellcheck": "false", "style": "max-width:none;font-family:monospace"}
    )

    def prepare_value(self, value):
        if isinstance(value, dict | list):
            return json.dumps(value, indent=2)
        return value

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return {"steps": []}
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None


class JourneyForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=2000)
    definition = DefinitionField(label="Draft steps (JSON)", required=False, help_text=DEFINITION_HELP)
