"""Writes for connectors and partner configurations. Views, serializers, admin and tasks call these.

Every change is validated first and writes nothing when invalid; every change leaves an audit event without
secret values; secrets are encrypted before they reach the database and never logged.
"""

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from connectors import crypto
from connectors.delivery import outbox
from connectors.errors import InUseError
from connectors.models import Connector, ConnectorEvent, PartnerConfig
from connectors.partners.base import Partner
from connectors.partners.registry import UnknownPartner, get_partner
from connectors.selectors import connector_usages, partner_config_usages
from dap.service_helpers import actor_name, actor_user, merge_errors, required_name

logger = logging.getLogger(__name__)

MIN_TIMEOUT, MAX_TIMEOUT = 0.5, 30.0


def _record(*, action, connector, actor, config=None, changes=None) -> ConnectorEvent:
    return ConnectorEvent.objects.create(
        connector=connector,
        connector_name=connector.name,
        partner_config=config,
        partner_config_name=config.name if config else "",
        action=action,
        changes=changes or {},
        actor=actor_user(actor),
        actor_name=actor_name(actor),
    )


def _server_to_server_partner(partner_key: str) -> Partner:
    try:
        partner = get_partner(partner_key)
    except UnknownPartner:
        raise ValidationError({"partner": [f'Unknown partner "{partner_key}".']}) from None
    if not partner.is_server_to_server:
        raise ValidationError(
            {"partner": [f"{partner.name} is tag-based: it sends nothing server-side; use its snippet instead."]}
        )
    return partner


def _clean_timeout(value: Any) -> float:
    if value is None or value == "":
        return float(django_settings.DAP_DEFAULT_TIMEOUT_SECONDS)
    try:
        timeout = float(value)
    except (TypeError, ValueError):
        raise ValidationError({"timeout_seconds": ["Enter a number of seconds."]}) from None
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        raise ValidationError({"timeout_seconds": [f"Enter between {MIN_TIMEOUT} and {MAX_TIMEOUT} seconds."]})
    return timeout


def _clean_base_url(value: Any) -> str:
    """An admin-only override of where a configuration sends (regional endpoint, the partner sandbox): an http(s)
    URL with a host and an optional path, no credentials (they would show in the audit history), query or fragment
    (paths are appended to it)."""
    if not value:
        return ""

    def refuse(message: str = "Enter a valid http(s) URL."):
        return ValidationError({"base_url_override": [message]})

    if not isinstance(value, str):
        raise refuse()
    try:
        URLValidator(schemes=["http", "https"])(value)
        parts = urlsplit(value)
    except (ValidationError, ValueError):
        raise refuse() from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise refuse("Put no user name or password in the URL.")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise refuse("Enter the base URL without ? query or # fragment: paths are appended to it.")
    return value.rstrip("/")


def _diff(old: dict, new: dict, secret_names: set[str], old_secrets: dict, new_secrets: dict) -> dict:
    changes: dict[str, Any] = {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            changes[key] = {"from": old.get(key), "to": new.get(key)}
    for key in sorted(secret_names):
        if old_secrets.get(key) != new_secrets.get(key):
            changes[key] = {"secret": True, "changed": True}
    return changes


def _ensure_unique_connector_name(name: str, exclude_pk=None) -> None:
    qs = Connector.objects.filter(name__iexact=name)
    if exclude_pk:
        qs = qs.exclude(pk=exclude_pk)
    if qs.exists():
        raise ValidationError({"name": ["A connector with this name already exists."]})


def _ensure_unique_config_name(connector: Connector, name: str, exclude_pk=None, field="name") -> None:
    qs = connector.configs.filter(name__iexact=name)
    if exclude_pk:
        qs = qs.exclude(pk=exclude_pk)
    if qs.exists():
        raise ValidationError({field: ["This connector already has a configuration with this name."]})


@sensitive_variables()  # error reports never show the settings and secrets of these frames (or deeper ones)
@transaction.atomic
def connector_create(
    *,
    partner_key: str,
    name: str,
    config_name: str | None = None,
    settings: dict | None = None,
    timeout_seconds: Any = None,
    base_url_override: str = "",
    actor=None,
) -> Connector:
    """Create a connector with its first configuration, validated against the partner's schema."""
    errors: list[ValidationError] = []
    partner = clean_name = clean_config_name = timeout = None
    plain: dict = {}
    secrets: dict = {}
    base_url = ""
    try:
        partner = _server_to_server_partner(partner_key)
    except ValidationError as exc:
        errors.append(exc)
    try:
        clean_name = required_name(name)
        _ensure_unique_connector_name(clean_name)
    except ValidationError as exc:
        errors.append(exc)
    try:
        clean_config_name = required_name(config_name or "Default", "config_name")
    except ValidationError as exc:
        errors.append(exc)
    try:
        timeout = _clean_timeout(timeout_seconds)
    except ValidationError as exc:
        errors.append(exc)
    try:
        base_url = _clean_base_url(base_url_override)
    except ValidationError as exc:
        errors.append(exc)
    if partner is not None:
        try:
            plain, secrets = partner.clean_settings(settings or {})
        except ValidationError as exc:
            errors.append(_settings_errors(exc))
    if errors:
        raise merge_errors(*errors)

    connector = Connector.objects.create(partner_key=partner.key, name=clean_name, created_by=actor_user(actor))
    config = PartnerConfig(
        connector=connector,
        name=clean_config_name,
        settings=plain,
        timeout_seconds=timeout,
        base_url_override=base_url,
    )
    config.set_secrets(secrets)
    config.save()
    _record(
        action=ConnectorEvent.Action.CREATED,
        connector=connector,
        actor=actor,
        config=config,
        changes={
            "partner": partner.key,
            "name": clean_name,
            "configuration": clean_config_name,
            **_diff({}, plain, {f.name for f in partner.secret_fields}, {}, secrets),
        },
    )
    logger.info("connector %s created (partner=%s) by %s", connector.pk, partner.key, actor_name(actor) or "system")
    return connector


@transaction.atomic
def connector_update(*, connector: Connector, name: str, actor=None) -> Connector:
    clean_name = required_name(name)
    _ensure_unique_connector_name(clean_name, exclude_pk=connector.pk)
    if clean_name == connector.name:
        return connector
    old = connector.name
    connector.name = clean_name
    connector.save(update_fields=["name", "updated_at"])
    _record(
        action=ConnectorEvent.Action.UPDATED,
        connector=connector,
        actor=actor,
        changes={"name": {"from": old, "to": clean_name}},
    )
    logger.info("connector %s renamed by %s", connector.pk, actor_name(actor) or "system")
    return connector


def _settings_errors(exc: ValidationError) -> ValidationError:
    return ValidationError({f"settings.{k}": v for k, v in exc.message_dict.items()})


@sensitive_variables()
@transaction.atomic
def partner_config_create(
    *,
    connector: Connector,
    name: str,
    settings: dict | None = None,
    timeout_seconds: Any = None,
    base_url_override: str = "",
    actor=None,
) -> PartnerConfig:
    """Add a configuration; refused for partners that allow only one."""
    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    partner = connector.partner
    if not partner.multiple_configs and connector.configs.exists():
        raise ValidationError(
            {
                "non_field_errors": [
                    f"{partner.name} allows a single configuration per connector; edit the existing one."
                ]
            }
        )
    errors: list[ValidationError] = []
    clean_name = timeout = None
    base_url = ""
    plain: dict = {}
    secrets: dict = {}
    try:
        clean_name = required_name(name)
        _ensure_unique_config_name(connector, clean_name)
    except ValidationError as exc:
        errors.append(exc)
    try:
        timeout = _clean_timeout(timeout_seconds)
    except ValidationError as exc:
        errors.append(exc)
    try:
        base_url = _clean_base_url(base_url_override)
    except ValidationError as exc:
        errors.append(exc)
    try:
        plain, secrets = partner.clean_settings(settings or {})
    except ValidationError as exc:
        errors.append(_settings_errors(exc))
    if errors:
        raise merge_errors(*errors)
    config = PartnerConfig(
        connector=connector, name=clean_name, settings=plain, timeout_seconds=timeout, base_url_override=base_url
    )
    config.set_secrets(secrets)
    config.save()
    _record(
        action=ConnectorEvent.Action.CONFIG_ADDED,
        connector=connector,
        actor=actor,
        config=config,
        changes={"name": clean_name, **_diff({}, plain, {f.name for f in partner.secret_fields}, {}, secrets)},
    )
    logger.info("partner config %s added to connector %s by %s", config.pk, connector.pk, actor_name(actor) or "system")
    return config


_UNSET = object()


@sensitive_variables()
@transaction.atomic
def partner_config_update(
    *,
    partner_config: PartnerConfig,
    name: Any = _UNSET,
    settings: dict | None = None,
    timeout_seconds: Any = _UNSET,
    base_url_override: Any = _UNSET,
    actor=None,
) -> PartnerConfig:
    """Edit a configuration. Settings given are merged over the stored ones; an empty secret keeps the stored one."""
    config = PartnerConfig.objects.select_for_update().select_related("connector").get(pk=partner_config.pk)
    partner = config.connector.partner
    old_plain = dict(config.settings)
    old_secrets = config.get_secrets()
    errors: list[ValidationError] = []
    new_name = config.name
    new_timeout = config.timeout_seconds
    new_base = config.base_url_override
    if name is not _UNSET:
        try:
            new_name = required_name(name)
            _ensure_unique_config_name(config.connector, new_name, exclude_pk=config.pk)
        except ValidationError as exc:
            errors.append(exc)
    if timeout_seconds is not _UNSET:
        try:
            new_timeout = _clean_timeout(timeout_seconds)
        except ValidationError as exc:
            errors.append(exc)
    if base_url_override is not _UNSET:
        try:
            new_base = _clean_base_url(base_url_override)
        except ValidationError as exc:
            errors.append(exc)
    plain, secrets = old_plain, old_secrets
    if settings is not None:
        if not isinstance(settings, dict):
            errors.append(ValidationError({"settings": ["Expected an object of settings."]}))
        else:
            merged = {**old_plain, **settings}
            try:
                plain, secrets = partner.clean_settings(merged, existing_secrets=old_secrets)
            except ValidationError as exc:
                errors.append(_settings_errors(exc))
    if errors:
        raise merge_errors(*errors)

    changes = _diff(old_plain, plain, {f.name for f in partner.secret_fields}, old_secrets, secrets)
    if new_name != config.name:
        changes["configuration name"] = {"from": config.name, "to": new_name}
    if new_timeout != config.timeout_seconds:
        changes["timeout_seconds"] = {"from": config.timeout_seconds, "to": new_timeout}
    if new_base != config.base_url_override:
        changes["base_url_override"] = {"from": config.base_url_override, "to": new_base}
    if not changes:
        return config
    config.name = new_name
    config.settings = plain
    config.timeout_seconds = new_timeout
    config.base_url_override = new_base
    if secrets != old_secrets:
        config.set_secrets(secrets)
    if config.health != PartnerConfig.Health.OK and (
        secrets != old_secrets or plain != old_plain or "base_url_override" in changes
    ):
        # New credentials or settings: try again (the paused deliveries are still queued).
        changes["health"] = {"from": config.health, "to": PartnerConfig.Health.OK}
        config.health, config.health_detail, config.health_changed_at = PartnerConfig.Health.OK, "", timezone.now()
    config.save()
    _record(
        action=ConnectorEvent.Action.CONFIG_UPDATED,
        connector=config.connector,
        actor=actor,
        config=config,
        changes=changes,
    )
    logger.info(
        "partner config %s updated by %s (fields: %s)", config.pk, actor_name(actor) or "system", sorted(changes)
    )
    return config


def _set_status(connector: Connector, status: str, actor) -> None:
    connector.status = status
    connector.status_changed_at = timezone.now()
    connector.status_changed_by = actor_user(actor)
    connector.save(update_fields=["status", "status_changed_at", "status_changed_by", "updated_at"])


@transaction.atomic
def connector_deactivate(*, connector: Connector, actor=None) -> bool:
    """Stop all sending for the connector. Idempotent: returns False when it was already deactivated."""
    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    if connector.status == Connector.Status.DEACTIVATED:
        return False
    _set_status(connector, Connector.Status.DEACTIVATED, actor)
    _record(action=ConnectorEvent.Action.DEACTIVATED, connector=connector, actor=actor)
    logger.info("connector %s deactivated by %s", connector.pk, actor_name(actor) or "system")
    return True


@transaction.atomic
def connector_activate(*, connector: Connector, actor=None) -> bool:
    """Resume sending. Idempotent: returns False when it was already active."""
    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    if connector.status == Connector.Status.ACTIVE:
        return False
    deactivated_at = connector.status_changed_at
    _set_status(connector, Connector.Status.ACTIVE, actor)
    # Re-sync: what changed while deactivated was skipped; send the current members again.
    resynced = outbox.connector_resync(connector=connector, since=deactivated_at)
    _record(action=ConnectorEvent.Action.ACTIVATED, connector=connector, actor=actor, changes={"resynced": resynced})
    logger.info("connector %s activated by %s", connector.pk, actor_name(actor) or "system")
    return True


@transaction.atomic
def connector_delete(*, connector: Connector, actor=None) -> None:
    """Delete the connector and its configurations; refused (InUseError) while anything uses it."""
    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    usages = connector_usages(connector=connector)
    if usages:
        raise InUseError(f'Connector "{connector.name}"', usages)
    _record(
        action=ConnectorEvent.Action.DELETED,
        connector=connector,
        actor=actor,
        changes={"partner": connector.partner_key},
    )
    pk = connector.pk
    connector.delete()
    logger.info("connector %s deleted by %s", pk, actor_name(actor) or "system")


@transaction.atomic
def partner_config_delete(*, partner_config: PartnerConfig, actor=None) -> None:
    """Delete one configuration; refused while used, and refused for the connector's last configuration."""
    config = PartnerConfig.objects.select_for_update().select_related("connector").get(pk=partner_config.pk)
    usages = partner_config_usages(config_ids=[config.pk])
    if usages:
        raise InUseError(f'Configuration "{config.name}"', usages)
    if not config.connector.configs.exclude(pk=config.pk).exists():
        raise ValidationError(
            {"non_field_errors": ["This is the connector's only configuration: delete the connector instead."]}
        )
    _record(action=ConnectorEvent.Action.CONFIG_DELETED, connector=config.connector, actor=actor, config=config)
    pk = config.pk
    config.delete()
    logger.info("partner config %s deleted by %s", pk, actor_name(actor) or "system")


@transaction.atomic
def partner_config_resume(*, partner_config: PartnerConfig, actor=None) -> bool:
    """An admin resumes a configuration paused by its health state (credentials invalid, endpoint gone)."""
    config = PartnerConfig.objects.select_for_update().select_related("connector").get(pk=partner_config.pk)
    if config.health == PartnerConfig.Health.OK:
        return False
    before = config.health
    config.health, config.health_detail, config.health_changed_at = PartnerConfig.Health.OK, "", timezone.now()
    config.save(update_fields=["health", "health_detail", "health_changed_at", "updated_at"])
    _record(
        action=ConnectorEvent.Action.RESUMED,
        connector=config.connector,
        actor=actor,
        config=config,
        changes={"health": {"from": before, "to": PartnerConfig.Health.OK}},
    )
    transaction.on_commit(lambda: outbox.kick([config.pk]) if django_settings.DAP_KICK_ON_COMMIT else None)
    logger.info("partner config %s resumed by %s", config.pk, actor_name(actor) or "system")
    return True


@dataclass(frozen=True)
class ConnectionTestResult:
    ok: bool
    message: str
    errors: dict[str, list[str]]

    def as_dict(self) -> dict:
        return {"ok": self.ok, "message": self.message, "errors": self.errors}


def _test_with_client(partner_config: PartnerConfig, partner: Partner) -> "ConnectionTestResult":
    from connectors.delivery.dispatcher import client_for

    client = client_for(partner_config)
    if client is None:
        return ConnectionTestResult(
            ok=True,
            message=f"Settings are complete and valid for {partner.name}. "
            "(This partner's wire protocol is not implemented yet: no call was made.)",
            errors={},
        )
    try:
        ok, message = client.test_connection()
    except Exception as exc:  # a failing partner call is an answer, not a crash
        logger.warning("partner config %s: test connection failed: %s", partner_config.pk, type(exc).__name__)
        ok, message = False, f"The call to {partner.name} failed: {type(exc).__name__}."
    # The message may quote the partner's answer or a URL: never with the configuration's own secrets in it.
    message = crypto.without_secrets(message, partner_config.get_secrets().values())
    return ConnectionTestResult(ok=ok, message=message, errors={})


@sensitive_variables()
def partner_config_test_connection(*, partner_config: PartnerConfig, actor=None) -> ConnectionTestResult:
    """Check the stored configuration now: every setting and secret valid against the partner's schema.

    Real partner calls (reading the audience or segment) come with the wire protocols.
    """
    partner = partner_config.connector.partner
    secrets = partner_config.get_secrets()
    try:
        partner.clean_settings({**partner_config.settings}, existing_secrets=secrets)
    except ValidationError as exc:
        result = ConnectionTestResult(
            ok=False,
            message=f"The configuration is incomplete or invalid for {partner.name}.",
            errors=exc.message_dict,
        )
    else:
        result = _test_with_client(partner_config, partner)
    _record(
        action=ConnectorEvent.Action.CONNECTION_TESTED,
        connector=partner_config.connector,
        actor=actor,
        config=partner_config,
        changes={"ok": result.ok},
    )
    return result
