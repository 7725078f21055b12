"""Template helpers for delivery statistics: a small inline SVG sparkline (no script, no image request)."""

from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()

# Category -> stroke colour (the same colours as the connector page's chart).
SPARK_COLOURS = {"added": "#1f8a4c", "removed": "#2a6fd6", "errors": "#c0392b"}
WIDTH, HEIGHT, PAD = 112, 28, 2


def _points(values: list[int], top: int) -> str:
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    usable = HEIGHT - 2 * PAD
    return " ".join(
        f"{PAD + i * step:.1f},{HEIGHT - PAD - (v / top * usable if top else 0):.1f}" for i, v in enumerate(values)
    )


@register.simple_tag
def sparkline(series: dict, label: str = "") -> str:
    """Added, removed and errors per day as three lines on one scale; the title says the numbers."""
    lines = [(key, list(series.get(key) or [])) for key in SPARK_COLOURS]
    top = max((max(values) for _, values in lines if values), default=0)
    polylines = format_html_join(
        "",
        '<polyline class="spark-{}" fill="none" stroke="{}" stroke-width="1.5" points="{}"/>',
        ((key, SPARK_COLOURS[key], _points(values, top)) for key, values in lines if values),
    )
    title = "; ".join(f"{key}: {', '.join(str(v) for v in values)}" for key, values in lines)
    return format_html(
        '<svg class="sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">'
        "<title>{}</title>{}</svg>",
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        f"{label}: last {len(lines[0][1])} days" if label else "last days",
        title,
        polylines,
    )
