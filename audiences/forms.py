"""Forms for the audience pages and the admin. They only shape input (JSON text, one value per line, comma lists);
`audiences.services` validates, and `apply_errors` puts its field errors back on the form."""

import json

from django import forms
from django.core.exceptions import ValidationError

from audiences.models import Audience
from connectors.identifiers import Slot
from connectors.models import PartnerConfig
from connectors.partners.base import UsableIn
from connectors.partners.registry import REGISTRY

RULE_EXAMPLE = json.dumps(
    {
        "all": [
            {"attribute": "country", "op": "equals", "value": "NL"},
            {
                "any": [
                    {"attribute": "orders", "op": "gte", "value": 3},
                    {"attribute": "tags", "op": "contains", "value": "vip"},
                ]
            },
        ]
    },
    indent=2,
)
RULE_HELP = (
    'A group {"all": [...]} (every condition) or {"any": [...]} (at least one) of conditions '
    '{"attribute", "op", "value"}; groups nest. Operators: equals, not_equals, in (a list), contains, gt, gte, lt, '
    "lte (numbers or ISO dates), exists (true/false), within_days (days)."
)


def parse_json_text(text: str):
    """The JSON in `text`; a ValidationError naming the line and column when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"Not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None


def apply_errors(form: forms.Form, exc: ValidationError, *, values_field: str | None = None) -> None:
    """Service errors onto the form: known fields by name, `values.N` onto the values field as "Line N+1", the rest
    on the form."""
    for key, messages in exc.message_dict.items():
        head, _, index = key.partition(".")
        for message in messages:
            if values_field and head == "values" and index.isdigit():
                form.add_error(values_field, f"Line {int(index) + 1}: {message}")
            elif values_field and head == "values" and index:
                form.add_error(values_field, message)
            else:
                form.add_error(head if head in form.fields else None, message)


class AudienceForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    rule = forms.CharField(
        label="Rule (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false", "class": "code"}),
        help_text=RULE_HELP,
    )

    def __init__(self, *args, kind: str, audience: Audience | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        if kind == Audience.Kind.STATIC:
            del self.fields["rule"]
        if audience is not None and not self.is_bound:
            self.initial.update({"name": audience.name, "description": audience.description})
            if audience.rule is not None and "rule" in self.fields:
                self.initial["rule"] = json.dumps(audience.rule, indent=2, ensure_ascii=False)
        elif "rule" in self.fields and not self.is_bound:
            self.initial["rule"] = RULE_EXAMPLE

    def clean_rule(self):
        text = (self.cleaned_data.get("rule") or "").strip()
        return parse_json_text(text) if text else None


class EntriesForm(forms.Form):
    slot = forms.ChoiceField(choices=Slot.choices, initial=Slot.EMAIL, label="Identifier")
    values = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
        required=False,
        help_text="One value per line; they are normalised like profile identifiers (email lower-cased, phone "
        "in E.164…).",
    )
    replace = forms.BooleanField(
        required=False, label="Replace this identifier's entries (the list's other identifiers are kept)"
    )

    def values_list(self) -> list[str]:
        return [line for line in (self.cleaned_data.get("values") or "").splitlines() if line.strip()]


def usable_configs():
    """Configurations whose partner takes audiences, for the connection form."""
    keys = [p.key for p in REGISTRY.values() if p.is_server_to_server and UsableIn.AUDIENCES in p.usable_in]
    return (
        PartnerConfig.objects.filter(connector__partner_key__in=keys)
        .select_related("connector")
        .order_by("connector__name", "name")
    )


def _config_label(config: PartnerConfig) -> str:
    partner = REGISTRY.get(config.connector.partner_key)
    state = "" if config.connector.is_active else " (deactivated)"
    return (
        f"{config.connector.name} / {config.name} — {partner.name if partner else config.connector.partner_key}{state}"
    )


class ConnectionForm(forms.Form):
    partner_config = forms.TypedChoiceField(label="Connector configuration", coerce=int, required=False)
    partner_audience_id = forms.CharField(label="Partner audience ID", max_length=200, required=False)
    profile_variables = forms.CharField(
        label="Profile variables",
        required=False,
        help_text="Attribute names sent with each profile, separated by commas.",
    )

    def __init__(self, *args, config: PartnerConfig | None = None, connection=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.config = config
        choices = [("", "---------")] + [(c.pk, _config_label(c)) for c in usable_configs()]
        self.fields["partner_config"].choices = choices
        if connection is not None:
            del self.fields["partner_config"]
            if not self.is_bound:
                self.initial.update(
                    {
                        "partner_audience_id": connection.partner_audience_id,
                        "profile_variables": ", ".join(connection.profile_variables or []),
                    }
                )
        elif config is not None:
            self.initial.setdefault("partner_config", config.pk)
        partner = REGISTRY.get(config.connector.partner_key) if config is not None else None
        if partner is not None:
            field = partner.audience_id_field
            if field is None:
                del self.fields["partner_audience_id"]
            else:
                self.fields["partner_audience_id"].label = field.label + (" *" if field.required else "")
                self.fields["partner_audience_id"].help_text = field.help_text
            if not partner.profile_variables:
                del self.fields["profile_variables"]

    def variables(self) -> list[str]:
        text = self.cleaned_data.get("profile_variables") or ""
        return [v.strip() for v in text.split(",") if v.strip()]


class ConnectionDeleteForm(forms.Form):
    remove_members = forms.BooleanField(
        required=False,
        label="Also remove the current members from the partner audience",
        help_text="A removal is queued for every member now; without it the partner keeps the members it has.",
    )
