"""Who may do what: every URL pattern of the project (enumerated from the resolver) x anonymous, viewer, marketing
admin and superuser, per method, against an explicit table. A new endpoint without an entry fails
`test_every_route_has_an_entry`; so does an entry whose route is gone.

Expected values: a status code, "login" (a redirect to the pages' login, with ?next=) or "admin-login" (a redirect
to the admin's login). Writes are sent with an empty body: an allowed role gets past the permission check and gets
the view's own answer (400 invalid, 302 done, 200 form re-rendered with errors...), a refused one 401/403.
Policy:
- pages: anonymous -> login; viewer reads (200) and is refused every form and action (403); marketing admin and
  superuser may do everything the "Marketing admin" group allows;
- API: anonymous -> 403 (session authentication answers 403, not 401); viewer reads, writes 403; marketing admin
  writes;
- admin site: staff only (the viewer and the marketing admin are not staff: -> admin-login); a superuser is still
  held by the admin's own limits (read-only models: add/change/delete 403);
- public on purpose: the login page, logout, /sync/<partner>/ (cookie-sync pixel), /healthz, /metrics while
  DAP_METRICS_TOKEN is unset (see test_metrics_with_a_token), the root redirect, the API's schema and its Swagger
  page (no data). Static files (WhiteNoise middleware) are not in the URLconf.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.http import HttpResponseRedirect

from tests.security.conftest import ROLES, role_client
from tests.security.routes import Route, all_routes

pytestmark = pytest.mark.django_db

LOGIN, ADMIN_LOGIN = "login", "admin-login"
A, V, M, S = ROLES  # anonymous, viewer, marketer, superuser


def outcome(response):
    if isinstance(response, HttpResponseRedirect) or response.status_code in (301, 302):
        location = response.get("Location", "")
        if location.startswith("/accounts/login/?next="):
            return LOGIN
        if location.startswith("/admin/login/?next="):
            return ADMIN_LOGIN
    return response.status_code


# --- URL keyword arguments per route -------------------------------------------------------------------------------


def _conn(w):
    return {"pk": w.connector}


def _conf(w):
    return {"pk": w.connector, "config_pk": w.config2}


def _aud(w):
    return {"pk": w.audience}


def _jour(w):
    return {"pk": w.journey}


KWARGS = {
    "connectors:new": lambda w: {"partner_key": "webhook"},
    "connectors:detail": _conn,
    "connectors:edit": _conn,
    "connectors:deactivate": _conn,
    "connectors:activate": _conn,
    "connectors:delete": _conn,
    "connectors:config_add": _conn,
    "connectors:config_edit": _conf,
    "connectors:config_delete": _conf,
    "connectors:config_test": _conf,
    "connectors:config_resume": _conf,
    "connectors:replay": _conn,
    "audiences:detail": _aud,
    "audiences:edit": _aud,
    "audiences:delete": _aud,
    "audiences:refresh": _aud,
    "audiences:entries": lambda w: {"pk": w.static_audience},
    "audiences:connection_add": _aud,
    "audiences:connection_edit": lambda w: {"pk": w.audience, "connection_pk": w.connection},
    "audiences:connection_delete": lambda w: {"pk": w.audience, "connection_pk": w.connection},
    "journeys:detail": _jour,
    "journeys:edit": _jour,
    "journeys:publish": _jour,
    "journeys:pause": _jour,
    "journeys:resume": _jour,
    "journeys:stop": _jour,
    "journeys:delete": _jour,
    "cookie-sync": lambda w: {"partner_key": "xandr_cookie_sync"},
    "alert-detail": lambda w: {"pk": w.alert},
    "partner-detail": lambda w: {"key": "webhook"},
    "connector-detail": _conn,
    "connector-activate": _conn,
    "connector-deactivate": _conn,
    "connector-stats": _conn,
    "connector-usages": _conn,
    "partner-config-detail": lambda w: {"pk": w.config},
    "partner-config-resume": lambda w: {"pk": w.config},
    "partner-config-test": lambda w: {"pk": w.config},
    "delivery-detail": lambda w: {"pk": w.delivery},
    "delivery-attempt-detail": lambda w: {"pk": w.attempt},
    "connector-config-list": lambda w: {"connector_pk": w.connector},
    "connector-config-detail": lambda w: {"connector_pk": w.connector, "pk": w.config2},
    "connector-config-stats": lambda w: {"connector_pk": w.connector, "pk": w.config2},
    "journey-detail": _jour,
    "journey-enrollments": _jour,
    "journey-pause": _jour,
    "journey-publish": _jour,
    "journey-resume": _jour,
    "journey-stop": _jour,
    "journey-versions": _jour,
    "profile-detail": lambda w: {"pk": w.profile},
    "audience-detail": _aud,
    "audience-changes": _aud,
    "audience-entries": lambda w: {"pk": w.static_audience},
    "audience-members": _aud,
    "audience-refresh": _aud,
    "audience-connection-list": lambda w: {"audience_pk": w.audience},
    "audience-connection-detail": lambda w: {"audience_pk": w.audience, "pk": w.connection},
    "admin:view_on_site": lambda w: {"content_type_id": _content_type("journeys", "journey"), "object_id": w.journey},
    "admin:auth_user_password_change": lambda w: {"id": w.users["viewer"]},
    "admin:app_list": lambda w: {"app_label": "connectors"},
    "admin/(?P<url>.*)$": lambda w: {"url": "no-such-page/"},
}


def _content_type(app_label, model):
    from django.contrib.contenttypes.models import ContentType

    return ContentType.objects.get(app_label=app_label, model=model).pk


# --- the admin site ------------------------------------------------------------------------------------------------

# Per registered model: the object its change/delete/history pages open, and what a superuser gets on each page
# (changelist, add, change, delete, history, "<id>/" redirect) for GET and for POST with an empty form ({"post": "yes"}
# confirms a delete). Everyone else is not staff: admin-login everywhere. Models written by the platform only are
# read-only even for a superuser (add/change 403; some are not deletable either); a delete of an object in use is
# refused and shows the delete page again (200).
PAGES = ("changelist", "add", "change", "delete", "history", "redirect")
ADMIN_MODELS = {
    #                                                     changelist add  change delete history redirect
    "auth.group": (lambda w: w.group, {"GET": (200, 200, 200, 200, 200, 302), "POST": (200, 200, 200, 302, 200, 302)}),
    "auth.user": (
        lambda w: w.users["viewer"],
        {"GET": (200, 200, 200, 200, 200, 302), "POST": (200, 200, 200, 302, 200, 302)},
    ),
    "authtoken.tokenproxy": (
        lambda w: w.users["superuser"],
        {"GET": (200, 200, 200, 200, 200, 302), "POST": (200, 200, 200, 302, 200, 302)},
    ),
    "django_q.schedule": (
        lambda w: w.schedule,
        {"GET": (200, 200, 200, 200, 200, 302), "POST": (200, 200, 200, 302, 200, 302)},
    ),
    "django_q.success": (
        lambda w: w.success,
        {"GET": (200, 403, 200, 200, 200, 302), "POST": (200, 403, 302, 302, 200, 302)},
    ),
    "django_q.failure": (
        lambda w: w.failure,
        {"GET": (200, 403, 200, 200, 200, 302), "POST": (200, 403, 302, 302, 200, 302)},
    ),
    "connectors.connector": (
        lambda w: w.connector,
        {"GET": (200, 200, 200, 200, 200, 302), "POST": (200, 200, 200, 200, 200, 302)},
    ),
    "connectors.partnerconfig": (
        lambda w: w.config2,
        {"GET": (200, 200, 200, 200, 200, 302), "POST": (200, 200, 200, 302, 200, 302)},
    ),
    "connectors.connectorevent": (
        lambda w: w.connector_event,
        {"GET": (200, 403, 200, 403, 200, 302), "POST": (200, 403, 403, 403, 200, 302)},
    ),
    "connectors.dailystat": (
        lambda w: w.stat,
        {"GET": (200, 403, 200, 200, 200, 302), "POST": (200, 403, 403, 302, 200, 302)},
    ),
    "connectors.delivery": (
        lambda w: w.delivery,
        {"GET": (200, 403, 200, 200, 200, 302), "POST": (200, 403, 403, 302, 200, 302)},
    ),
    "connectors.deliveryattempt": (
        lambda w: w.attempt,
        {"GET": (200, 403, 200, 200, 200, 302), "POST": (200, 403, 403, 302, 200, 302)},
    ),
    "audiences.audience": (
        lambda w: w.audience,
        {"GET": (200, 200, 200, 200, 200, 302), "POST": (200, 200, 200, 200, 200, 302)},
    ),
    "audiences.audienceconnection": (
        lambda w: w.connection,
        {"GET": (200, 200, 200, 200, 200, 302), "POST": (200, 200, 302, 302, 200, 302)},
    ),
    "audiences.audiencemembership": (
        lambda w: w.membership,
        {"GET": (200, 403, 200, 403, 200, 302), "POST": (200, 403, 403, 403, 200, 302)},
    ),
    "audiences.audienceentry": (
        lambda w: w.entry,
        {"GET": (200, 403, 200, 403, 200, 302), "POST": (200, 403, 403, 403, 200, 302)},
    ),
    "audiences.profile": (
        lambda w: w.profile,
        {"GET": (200, 403, 200, 403, 200, 302), "POST": (200, 403, 403, 403, 200, 302)},
    ),
    "audiences.profileidentifier": (
        lambda w: w.identifier,
        {"GET": (200, 403, 200, 403, 200, 302), "POST": (200, 403, 403, 403, 200, 302)},
    ),
    "journeys.journey": (
        lambda w: w.journey,
        {"GET": (200, 200, 200, 200, 200, 302), "POST": (200, 200, 200, 200, 200, 302)},
    ),
    "journeys.journeyversion": (
        lambda w: w.version,
        {"GET": (200, 403, 200, 403, 200, 302), "POST": (200, 403, 403, 403, 200, 302)},
    ),
    "journeys.journeyactivationstep": (
        lambda w: w.step,
        {"GET": (200, 403, 200, 403, 200, 302), "POST": (200, 403, 403, 403, 200, 302)},
    ),
    "journeys.journeyenrollment": (
        lambda w: w.enrollment,
        {"GET": (200, 403, 200, 403, 200, 302), "POST": (200, 403, 403, 403, 200, 302)},
    ),
    "journeys.journeyevent": (
        lambda w: w.event,
        {"GET": (200, 403, 200, 403, 200, 302), "POST": (200, 403, 403, 403, 200, 302)},
    ),
    "monitoring.alert": (
        lambda w: w.alert,
        {"GET": (200, 403, 200, 200, 200, 302), "POST": (200, 403, 403, 302, 200, 302)},
    ),
    "monitoring.workerheartbeat": (
        lambda w: w.heartbeat,
        {"GET": (200, 403, 200, 200, 200, 302), "POST": (200, 403, 403, 302, 200, 302)},
    ),
}
if "orm" in settings.Q_CLUSTER:  # django-q2 lists its ORM broker's queue only when that broker is used (no REDIS_URL)
    ADMIN_MODELS["django_q.ormq"] = (
        lambda w: w.ormq,
        {"GET": (200, 403, 200, 200, 200, 302), "POST": (200, 403, 200, 302, 200, 302)},
    )


def _admin_model(route: Route) -> tuple[str, str] | None:
    """("app.model", page) for a per-model admin route, page one of PAGES."""
    text = route.route
    if not text.startswith("admin/") or text.count("/") < 3:
        return None
    _, app, model, *rest = text.split("/")
    label = f"{app}.{model}"
    for page in PAGES[:-1]:
        if route.name == f"admin:{app}_{model}_{page}":
            return label, page
    if not route.name and rest == ["<path:object_id>", ""]:
        return label, "redirect"
    return None


def kwargs_for(route: Route, world) -> dict:
    found = _admin_model(route)
    if found:
        label, page = found
        if page in ("changelist", "add"):
            return {}
        return {"object_id": ADMIN_MODELS[label][0](world)}
    base = route.key.removesuffix("[format]")
    if base in KWARGS:
        return KWARGS[base](world)
    return {}


def request_for(client, route: Route, method: str, kwargs: dict):
    url = route.url(**kwargs)
    if route.key in QUERY:
        url += "?" + QUERY[route.key]
    if route.route.startswith("api/"):
        return client.generic(method, url, b"{}" if method != "GET" else b"", content_type="application/json")
    data = {"post": "yes"} if (method == "POST" and route.name.endswith("_delete")) else {}
    if method == "GET":
        return client.get(url)
    return client.generic(method, url, _urlencode(data), content_type="application/x-www-form-urlencoded")


def _urlencode(data: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(data)


# --- the table ------------------------------------------------------------------------------------------------------

L, AL = LOGIN, ADMIN_LOGIN
STAFF_ONLY = (AL, AL, AL)  # anonymous, viewer, marketing admin: not staff

# (anonymous, viewer, marketing admin, superuser) per method.
EXPECTED = {
    # Public on purpose.
    "/": {"GET": (302, 302, 302, 302), "POST": (302, 302, 302, 302)},  # redirect to the connectors page
    "login": {"GET": (200, 200, 200, 200), "POST": (200, 200, 200, 200)},  # empty credentials: the form again
    "logout": {"GET": (405, 405, 405, 405), "POST": (302, 302, 302, 302)},
    "cookie-sync": {"GET": (400, 400, 400, 400), "POST": (405, 405, 405, 405)},  # pixel without a token: 400
    "healthz": {"GET": (200, 200, 200, 200), "POST": (405, 405, 405, 405)},
    "metrics": {"GET": (200, 200, 200, 200), "POST": (405, 405, 405, 405)},  # DAP_METRICS_TOKEN unset
    # The API's description holds no data (every endpoint it describes needs a login).
    "schema": {"GET": (200, 200, 200, 200), "POST": (405, 405, 405, 405)},
    "swagger-ui": {"GET": (200, 200, 200, 200), "POST": (405, 405, 405, 405)},
    # Pages: connectors.
    "connectors:list": {"GET": (L, 200, 200, 200), "POST": (L, 200, 200, 200)},
    "connectors:catalogue": {"GET": (L, 200, 200, 200), "POST": (L, 200, 200, 200)},
    "connectors:new": {"GET": (L, 403, 200, 200), "POST": (L, 403, 400, 400)},
    "connectors:detail": {"GET": (L, 200, 200, 200), "POST": (L, 200, 200, 200)},
    "connectors:edit": {"GET": (L, 403, 200, 200), "POST": (L, 403, 200, 200)},
    "connectors:deactivate": {"GET": (L, 403, 200, 200), "POST": (L, 403, 302, 302)},
    "connectors:activate": {"GET": (L, 403, 405, 405), "POST": (L, 403, 302, 302)},
    "connectors:delete": {"GET": (L, 403, 200, 200), "POST": (L, 403, 409, 409)},  # in use: refused, listed
    "connectors:config_add": {"GET": (L, 403, 200, 200), "POST": (L, 403, 400, 400)},
    "connectors:config_edit": {"GET": (L, 403, 200, 200), "POST": (L, 403, 400, 400)},
    "connectors:config_delete": {"GET": (L, 403, 200, 200), "POST": (L, 403, 302, 302)},
    "connectors:config_test": {"GET": (L, 403, 405, 405), "POST": (L, 403, 302, 302)},
    "connectors:config_resume": {"GET": (L, 403, 405, 405), "POST": (L, 403, 302, 302)},
    "connectors:replay": {"GET": (L, 403, 405, 405), "POST": (L, 403, 302, 302)},
    # Pages: audiences.
    "audiences:list": {"GET": (L, 200, 200, 200), "POST": (L, 200, 200, 200)},
    "audiences:new": {"GET": (L, 403, 200, 200), "POST": (L, 403, 400, 400)},
    "audiences:detail": {"GET": (L, 200, 200, 200), "POST": (L, 200, 200, 200)},
    "audiences:edit": {"GET": (L, 403, 200, 200), "POST": (L, 403, 400, 400)},
    "audiences:delete": {"GET": (L, 403, 200, 200), "POST": (L, 403, 409, 409)},  # connected: refused
    "audiences:refresh": {"GET": (L, 403, 405, 405), "POST": (L, 403, 302, 302)},
    "audiences:entries": {"GET": (L, 403, 200, 200), "POST": (L, 403, 400, 400)},
    "audiences:connection_add": {"GET": (L, 403, 200, 200), "POST": (L, 403, 400, 400)},
    "audiences:connection_edit": {"GET": (L, 403, 200, 200), "POST": (L, 403, 400, 400)},
    "audiences:connection_delete": {"GET": (L, 403, 200, 200), "POST": (L, 403, 302, 302)},
    # Pages: journeys.
    "journeys:list": {"GET": (L, 200, 200, 200), "POST": (L, 200, 200, 200)},
    "journeys:new": {"GET": (L, 403, 200, 200), "POST": (L, 403, 200, 200)},
    "journeys:detail": {"GET": (L, 200, 200, 200), "POST": (L, 200, 200, 200)},
    "journeys:edit": {"GET": (L, 403, 200, 200), "POST": (L, 403, 200, 200)},
    "journeys:publish": {"GET": (L, 403, 405, 405), "POST": (L, 403, 302, 302)},
    "journeys:pause": {"GET": (L, 403, 405, 405), "POST": (L, 403, 302, 302)},
    "journeys:resume": {"GET": (L, 403, 405, 405), "POST": (L, 403, 302, 302)},
    "journeys:stop": {"GET": (L, 403, 405, 405), "POST": (L, 403, 302, 302)},
    "journeys:delete": {"GET": (L, 403, 405, 405), "POST": (L, 403, 302, 302)},
    # API: connectors.
    "api-root": {"GET": (403, 200, 200, 200), "POST": (403, 405, 405, 405)},
    "partner-list": {"GET": (403, 200, 200, 200)},
    "partner-detail": {"GET": (403, 200, 200, 200)},
    "connector-list": {"GET": (403, 200, 200, 200), "POST": (403, 403, 400, 400)},
    "connector-overview": {"GET": (403, 200, 200, 200)},
    "connector-detail": {
        "GET": (403, 200, 200, 200),
        "PUT": (403, 403, 400, 400),
        "PATCH": (403, 403, 200, 200),
        "DELETE": (403, 403, 409, 409),  # in use
    },
    "connector-activate": {"GET": (403, 405, 405, 405), "POST": (403, 403, 200, 200)},
    "connector-deactivate": {"GET": (403, 405, 405, 405), "POST": (403, 403, 200, 200)},
    "connector-stats": {"GET": (403, 200, 200, 200)},
    "connector-usages": {"GET": (403, 200, 200, 200)},
    "connector-config-list": {"GET": (403, 200, 200, 200), "POST": (403, 403, 400, 400)},
    "connector-config-detail": {
        "GET": (403, 200, 200, 200),
        "PUT": (403, 403, 200, 200),
        "PATCH": (403, 403, 200, 200),
        "DELETE": (403, 403, 204, 204),
    },
    "connector-config-stats": {"GET": (403, 200, 200, 200)},
    "partner-config-detail": {"GET": (403, 200, 200, 200)},
    "partner-config-resume": {"GET": (403, 405, 405, 405), "POST": (403, 403, 200, 200)},
    "partner-config-test": {"GET": (403, 405, 405, 405), "POST": (403, 403, 200, 200)},
    "delivery-list": {"GET": (403, 200, 200, 200)},
    "delivery-detail": {"GET": (403, 200, 200, 200)},
    "delivery-replay": {"GET": (403, 405, 405, 405), "POST": (403, 403, 400, 400)},
    "delivery-attempt-list": {"GET": (403, 200, 200, 200)},
    "delivery-attempt-detail": {"GET": (403, 200, 200, 200)},
    "cookie-sync-token-list": {"GET": (403, 403, 405, 405), "POST": (403, 403, 400, 400)},  # change_profile
    # API: journeys.
    "journey-list": {"GET": (403, 200, 200, 200), "POST": (403, 403, 400, 400)},
    "journey-detail": {
        "GET": (403, 200, 200, 200),
        "PUT": (403, 403, 200, 200),
        "PATCH": (403, 403, 200, 200),
        "DELETE": (403, 403, 400, 400),  # live: refused
    },
    "journey-enrollments": {"GET": (403, 200, 200, 200)},
    "journey-versions": {"GET": (403, 200, 200, 200)},
    "journey-publish": {"GET": (403, 405, 405, 405), "POST": (403, 403, 400, 400)},
    "journey-pause": {"GET": (403, 405, 405, 405), "POST": (403, 403, 200, 200)},
    "journey-resume": {"GET": (403, 405, 405, 405), "POST": (403, 403, 400, 400)},
    "journey-stop": {"GET": (403, 405, 405, 405), "POST": (403, 403, 200, 200)},
    "journey-event-list": {"GET": (403, 403, 405, 405), "POST": (403, 403, 400, 400)},  # add_journeyevent
    # API: audiences and profiles.
    "profile-list": {"GET": (403, 200, 200, 200)},
    "profile-detail": {"GET": (403, 200, 200, 200)},
    "profile-bulk": {"GET": (403, 405, 405, 405), "POST": (403, 403, 400, 400)},
    "audience-list": {"GET": (403, 200, 200, 200), "POST": (403, 403, 400, 400)},
    "audience-detail": {
        "GET": (403, 200, 200, 200),
        "PUT": (403, 403, 400, 400),
        "PATCH": (403, 403, 200, 200),
        "DELETE": (403, 403, 400, 400),  # connected: refused
    },
    "audience-changes": {"GET": (403, 200, 200, 200)},
    "audience-members": {"GET": (403, 200, 200, 200)},
    "audience-entries": {"GET": (403, 200, 200, 200), "POST": (403, 403, 400, 400)},
    "audience-refresh": {"GET": (403, 405, 405, 405), "POST": (403, 403, 200, 200)},
    "audience-connection-list": {"GET": (403, 200, 200, 200), "POST": (403, 403, 400, 400)},
    "audience-connection-detail": {
        "GET": (403, 200, 200, 200),
        "PUT": (403, 403, 200, 200),
        "PATCH": (403, 403, 200, 200),
        "DELETE": (403, 403, 204, 204),
    },
    # API: monitoring.
    "alert-list": {"GET": (403, 200, 200, 200)},
    "alert-detail": {"GET": (403, 200, 200, 200)},
    # Admin site, beyond the per-model pages: staff only, but its login (and logout) pages.
    "admin:login": {"GET": (200, 200, 200, 302), "POST": (200, 200, 200, 200)},
    "admin:logout": {"GET": (302, 302, 302, 405), "POST": (302, 302, 302, 302)},
    "admin:index": {"GET": (*STAFF_ONLY, 200), "POST": (*STAFF_ONLY, 200)},
    "admin:app_list": {"GET": (*STAFF_ONLY, 200), "POST": (*STAFF_ONLY, 200)},
    "admin:password_change": {"GET": (*STAFF_ONLY, 200), "POST": (*STAFF_ONLY, 200)},
    "admin:password_change_done": {"GET": (*STAFF_ONLY, 200), "POST": (*STAFF_ONLY, 405)},
    "admin:auth_user_password_change": {"GET": (*STAFF_ONLY, 200), "POST": (*STAFF_ONLY, 200)},
    "admin:autocomplete": {"GET": (*STAFF_ONLY, 403), "POST": (*STAFF_ONLY, 405)},  # 403: no field asked for
    "admin:jsi18n": {"GET": (*STAFF_ONLY, 200), "POST": (*STAFF_ONLY, 405)},
    "admin:view_on_site": {"GET": (*STAFF_ONLY, 404), "POST": (*STAFF_ONLY, 404)},  # journeys have no public URL
    "admin/(?P<url>.*)$": {"GET": (*STAFF_ONLY, 404), "POST": (*STAFF_ONLY, 404)},
}
QUERY = {"audience-changes": "kind=enter"}


def expected_for(route: Route) -> dict | None:
    found = _admin_model(route)
    if found:
        label, page = found
        if label not in ADMIN_MODELS:
            return None
        superuser = ADMIN_MODELS[label][1]
        i = PAGES.index(page)
        return {method: (*STAFF_ONLY, superuser[method][i]) for method in ("GET", "POST")}
    return EXPECTED.get(route.key)


ROUTES = {route.key: route for route in all_routes()}
CASES = [
    pytest.param(key, method, role, id=f"{key}-{method}-{role}")
    for key, route in ROUTES.items()
    if (table := expected_for(route))
    for method in table
    for role in ROLES
]


def test_every_route_has_an_entry():
    """A new URL pattern needs its row here (and a thought about who may use it); a removed one loses its row."""
    missing = sorted(key for key, route in ROUTES.items() if expected_for(route) is None)
    assert not missing, f"routes without an entry in the authorization table: {missing}"
    stale = sorted(set(EXPECTED) - set(ROUTES))
    assert not stale, f"table entries for routes that no longer exist: {stale}"
    admin_labels = {f"{m._meta.app_label}.{m._meta.model_name}" for m in _admin_registry()}
    assert admin_labels == set(ADMIN_MODELS)


def _admin_registry():
    from django.contrib import admin

    return admin.site._registry


def test_the_matrix_covers_every_route_and_role():
    assert {key for key, _, _ in (c.values for c in CASES)} == set(ROUTES)
    assert len(CASES) >= len(ROUTES) * len(ROLES)


@pytest.mark.parametrize(("key", "method", "role"), CASES)
def test_authorization(world, key, method, role):
    route = ROUTES[key]
    expected = expected_for(route)[method][ROLES.index(role)]
    client = role_client(role, world)
    kwargs = kwargs_for(route, world)
    response = request_for(client, route, method, kwargs)
    got = outcome(response)
    assert got == expected, f"{method} {route.url(**kwargs)} as {role}: {got}, expected {expected}"
    if role in (V, M) and route.route.startswith("api/") and got == 403:
        assert b"permission" in response.content.lower()


def test_metrics_with_a_token(world, settings):
    """With DAP_METRICS_TOKEN set, /metrics wants the bearer token or a logged-in staff user."""
    settings.DAP_METRICS_TOKEN = "metrics-token-for-tests-0123456789"
    got = {role: role_client(role, world).get("/metrics").status_code for role in ROLES}
    assert got == {A: 401, V: 403, M: 403, S: 200}
    anonymous = role_client(A, world)
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    bearer = {"Authorization": f"Bearer {settings.DAP_METRICS_TOKEN}"}
    assert anonymous.get("/metrics", headers=bearer).status_code == 200


def test_api_token_authentication_follows_the_same_rules(world):
    """Token clients (no session, no CSRF) get the same answers: the viewer reads, cannot write."""
    from rest_framework.authtoken.models import Token

    viewer = Token.objects.create(user_id=world.users[V]).key
    marketer = Token.objects.create(user_id=world.users[M]).key
    client = role_client(A, world)
    assert client.get("/api/v1/connectors/", headers={"Authorization": f"Token {viewer}"}).status_code == 200
    body = {"partner": "webhook", "name": "x"}
    # A bad token is refused as such (403: session authentication comes first, so no 401 challenge).
    for token, status in ((viewer, 403), (marketer, 400), ("not-a-token", 403)):
        response = client.post(
            "/api/v1/connectors/", body, content_type="application/json", headers={"Authorization": f"Token {token}"}
        )
        assert response.status_code == status, token
    assert response.json() == {"detail": "Invalid token."}


def test_staff_without_permissions_sees_no_models(world):
    """Staff status opens the admin site, not its data: a staff user without permissions gets 403 on model pages."""
    from tests.factories import UserFactory

    staff = UserFactory(username="sec-staff", is_staff=True)
    client = role_client(A, world)
    client.force_login(staff)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/connectors/partnerconfig/").status_code == 403
    assert client.get(f"/admin/connectors/partnerconfig/{world.config}/change/").status_code == 403
    assert client.get("/admin/auth/user/").status_code == 403
