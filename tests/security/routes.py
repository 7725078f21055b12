"""Every URL pattern of the project, enumerated from the resolver, with a key per pattern and a way to build its URL.

Keys: the route name (admin ones as "admin:<name>"); a DRF format-suffix variant ("connectors.json") is
"<name>[format]"; a pattern without a name is its route text (the admin's "<object id>/" redirects, its catch-all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver, reverse


@dataclass(frozen=True)
class Route:
    key: str
    route: str  # the full pattern text, e.g. "api/v1/^connectors/(?P<pk>[^/.]+)/$"
    name: str  # namespaced name ("" for unnamed patterns)
    callback: object

    @property
    def is_format_variant(self) -> bool:
        return "(?P<format>" in self.route or "<drf_format_suffix:format>" in self.route

    @property
    def drf_actions(self) -> dict[str, str]:
        """{method: action} of a DRF viewset route; {} for other views."""
        return dict(getattr(self.callback, "actions", None) or {})

    def url(self, **kwargs) -> str:
        if self.is_format_variant:
            kwargs = {**kwargs, "format": "json"}
        if self.name:
            return reverse(self.name, kwargs=kwargs or None)
        return build_path(self.route, kwargs)


def build_path(route: str, kwargs: dict) -> str:
    """A path from a pattern's text, for the unnamed patterns (reverse needs a name)."""
    text = route.replace("^", "").replace("$", "")
    text = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(kwargs[m.group(1)]), text)
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(kwargs[m.group(1)]), text)
    return "/" + text


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = namespace
            if p.namespace:
                ns = f"{namespace}:{p.namespace}" if namespace else p.namespace
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or "")
            yield prefix + str(p.pattern), name, p.callback


def all_routes() -> list[Route]:
    routes = []
    for route, name, callback in _walk(get_resolver().url_patterns):
        variant = "(?P<format>" in route or "<drf_format_suffix:format>" in route
        key = f"{name}[format]" if name and variant else (name or route or "/")
        routes.append(Route(key=key, route=route, name=name, callback=callback))
    return routes
