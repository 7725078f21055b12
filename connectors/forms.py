"""Forms generated from a partner's settings schema, shared by the pages and the admin.

Forms only shape the input; the services validate it against the schema (one set of rules), and
`apply_service_errors` puts the service's field errors back on the form.
"""

from django import forms
from django.core.exceptions import ValidationError

from connectors import crypto
from connectors.partners.base import FieldType, Partner, SettingField

SETTING_PREFIX = "setting__"


def setting_field_name(name: str) -> str:
    return f"{SETTING_PREFIX}{name}"


def clear_field_name(name: str) -> str:
    """The "clear the stored value" checkbox of an optional secret (shown only while one is stored)."""
    return f"{SETTING_PREFIX}{name}__clear"


def _clearable(f: SettingField, secrets: dict) -> bool:
    return f.secret and not f.required and bool(secrets.get(f.name))


def setting_field_names(partner: Partner, *, config=None) -> list[str]:
    """The form field names `add_settings_fields` adds, in order (the admin's fieldsets list them)."""
    secrets = config.get_secrets() if config is not None else {}
    names = []
    for f in partner.settings:
        names.append(setting_field_name(f.name))
        if _clearable(f, secrets):
            names.append(clear_field_name(f.name))
    return names


def _form_field(f: SettingField, *, stored_secret: str | None) -> forms.Field:
    common = {"label": f.label, "help_text": f.help_text, "required": False}
    if f.type == FieldType.BOOLEAN:
        return forms.BooleanField(**common, initial=bool(f.default))
    if f.type == FieldType.CHOICE:
        choices = list(f.choices) if f.required or f.default is not None else [("", "---------"), *f.choices]
        return forms.ChoiceField(**common, choices=choices, initial=f.default)
    attrs = {}
    if f.required:
        attrs["aria-required"] = "true"
    if f.secret:
        masked = crypto.mask_text(stored_secret)
        placeholder = f"{masked} — leave empty to keep" if stored_secret else ""
        attrs.update({"autocomplete": "new-password", "placeholder": placeholder})
        widget = forms.PasswordInput(attrs=attrs, render_value=False)
    elif f.type == FieldType.TEXT:
        widget = forms.Textarea(attrs={**attrs, "rows": 3})
    elif f.type in (FieldType.INTEGER, FieldType.DECIMAL):
        widget = forms.TextInput(attrs={**attrs, "inputmode": "numeric"})
    elif f.type == FieldType.URL:
        widget = forms.URLInput(attrs=attrs)
    else:
        widget = forms.TextInput(attrs=attrs)
    # CharField for everything else: the schema does the typing, with its own messages.
    return forms.CharField(**common, widget=widget, initial=f.default, strip=False)


def add_settings_fields(form: forms.Form, partner: Partner, *, config=None) -> None:
    """Add one form field per setting; with `config`, show its stored plain values and masked secrets."""
    stored = config.settings if config is not None else {}
    secrets = config.get_secrets() if config is not None else {}
    for f in partner.settings:
        field = _form_field(f, stored_secret=secrets.get(f.name) if f.secret else None)
        if f.required and not (f.secret and secrets.get(f.name)):
            field.label_suffix = " *"
        form.fields[setting_field_name(f.name)] = field
        if not f.secret and f.name in stored:
            form.initial[setting_field_name(f.name)] = stored[f.name]
        if _clearable(f, secrets):
            form.fields[clear_field_name(f.name)] = forms.BooleanField(
                label=f"Clear the stored {f.label[0].lower()}{f.label[1:]}",
                required=False,
                help_text="Removes it when you save (a new value typed above wins).",
            )


def settings_from_form(form: forms.Form, partner: Partner) -> dict:
    data = {}
    for f in partner.settings:
        value = form.cleaned_data.get(setting_field_name(f.name))
        if f.type == FieldType.BOOLEAN:
            data[f.name] = bool(value)
        elif value not in (None, ""):
            data[f.name] = value
        elif f.secret and form.cleaned_data.get(clear_field_name(f.name)):
            data[f.name] = None  # clears the stored optional secret (Partner.clean_settings)
        elif not f.secret:
            data[f.name] = ""
    return data


def setting_fields(form: forms.Form):
    return [form[name] for name in form.fields if name.startswith(SETTING_PREFIX)]


def apply_service_errors(form: forms.Form, exc: ValidationError, *, aliases: dict[str, str] | None = None) -> None:
    """Put a service ValidationError on the form: settings.<x> -> that setting's field, others by name."""
    aliases = aliases or {}
    for key, messages in exc.message_dict.items():
        if key.startswith("settings."):
            target = setting_field_name(key.split(".", 1)[1])
        else:
            target = aliases.get(key, key)
        if target not in form.fields:
            target = None
        for message in messages:
            form.add_error(target, message)


class ConnectorCreateForm(forms.Form):
    name = forms.CharField(label="Connector name", max_length=200, required=False)
    config_name = forms.CharField(
        label="Configuration name",
        max_length=200,
        required=False,
        initial="Default",
        help_text="For example the sub-brand or region this account serves.",
    )
    timeout_seconds = forms.FloatField(
        label="Timeout (seconds)", required=False, initial=3.0, help_text="The whole request is stopped after this."
    )

    def __init__(self, *args, partner: Partner, **kwargs):
        super().__init__(*args, **kwargs)
        self.partner = partner
        add_settings_fields(self, partner)


class ConnectorRenameForm(forms.Form):
    name = forms.CharField(label="Connector name", max_length=200, required=False)


class PartnerConfigForm(forms.Form):
    name = forms.CharField(label="Configuration name", max_length=200, required=False)
    timeout_seconds = forms.FloatField(label="Timeout (seconds)", required=False, initial=3.0)

    def __init__(self, *args, partner: Partner, config=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.partner = partner
        if config is not None:
            self.initial.setdefault("name", config.name)
            self.initial.setdefault("timeout_seconds", config.timeout_seconds)
        add_settings_fields(self, partner, config=config)


class SnippetForm(forms.Form):
    """Tag-based partners: the settings that fill the snippet (nothing is stored)."""

    def __init__(self, *args, partner: Partner, **kwargs):
        super().__init__(*args, **kwargs)
        self.partner = partner
        add_settings_fields(self, partner)


class DeliveryLogFilterForm(forms.Form):
    """Filters of the connector page's recent partner calls and failed deliveries (GET; invalid values are ignored
    with a message, never an error page)."""

    config = forms.TypedChoiceField(label="Configuration", required=False, coerce=int, empty_value=None)
    outcome = forms.ChoiceField(label="Outcome", required=False)
    errors_only = forms.BooleanField(label="Only calls with errors", required=False)

    def __init__(self, *args, configs=(), **kwargs):
        super().__init__(*args, **kwargs)
        from connectors.models import Outcome

        self.fields["config"].choices = [("", "All configurations"), *((c.pk, c.name) for c in configs)]
        self.fields["outcome"].choices = [("", "All outcomes"), *Outcome.choices]

    def filters(self) -> dict:
        """Validated filters for the selectors (`partner_config`, `outcome`, `errors_only`); none when invalid."""
        if not self.is_bound or not self.is_valid():
            return {}
        data = self.cleaned_data
        return {
            key: value
            for key, value in (
                ("partner_config", data.get("config")),
                ("outcome", data.get("outcome")),
                ("errors_only", data.get("errors_only")),
            )
            if value
        }


class ReplayForm(forms.Form):
    """What the connector page replays: ticked failed deliveries (`ids`), or every one matching the filters."""

    ids = forms.CharField(required=False)
    config = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    outcome = forms.ChoiceField(required=False)

    def __init__(self, data, *, configs=()):
        super().__init__(data)
        from connectors.models import Outcome

        self.ids_list = data.getlist("ids") if hasattr(data, "getlist") else list(data.get("ids") or [])
        self.fields["config"].choices = [("", ""), *((c.pk, c.name) for c in configs)]
        self.fields["outcome"].choices = [("", ""), *Outcome.choices]

    def clean_ids(self) -> list[int]:
        ids = [value.strip() for value in self.ids_list if value.strip()]
        if any(not value.isdigit() for value in ids):
            raise forms.ValidationError("Delivery ids are whole numbers.")
        if len(ids) > 10000:
            raise forms.ValidationError("Tick at most 10,000 deliveries, or replay by filter.")
        return [int(value) for value in ids]

    def filters(self) -> dict:
        data = self.cleaned_data
        return {k: v for k, v in (("partner_config", data.get("config")), ("outcome", data.get("outcome"))) if v}
