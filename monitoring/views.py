"""Operations endpoints: /healthz for load balancers, /metrics for Prometheus. Thin: the checks and the collector
live in monitoring/health.py and monitoring/metrics.py."""

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods
from prometheus_client.exposition import choose_encoder

from monitoring import health, metrics


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "HEAD"])
def healthz(request):
    """No login: 200 when the database, the task broker and a worker heartbeat are all fine, else 503."""
    ok, body = health.health()
    return _no_store(JsonResponse(body, status=200 if ok else 503))


@require_http_methods(["GET", "HEAD"])
def metrics_view(request):
    """Prometheus exposition (text, or OpenMetrics when the scraper asks for it)."""
    status = metrics.metrics_access(
        authorization=request.headers.get("Authorization", ""), user=request.user, token=settings.DAP_METRICS_TOKEN
    )
    if status != 200:
        text = "Unauthorized\n" if status == 401 else "Forbidden\n"
        response = HttpResponse(text, status=status, content_type="text/plain")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return _no_store(response)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return _no_store(HttpResponse(encoder(metrics.REGISTRY), content_type=content_type))
