"""django-q2 tasks: take ids, call the audience services; every task is idempotent."""

import logging

from audiences import services
from audiences.models import Audience

logger = logging.getLogger(__name__)

# The schedule stops starting new refreshes after this long, below the cluster's task timeout (120 s); the least
# recently refreshed audiences go first, so the next run continues where this one stopped.
REFRESH_BUDGET_SECONDS = 90.0


def refresh_all() -> dict:
    """Schedule (every 5 minutes): refresh every audience; drop connections whose members have been removed."""
    report = services.audience_refresh_all(budget_seconds=REFRESH_BUDGET_SECONDS)
    logger.info("audience schedule: %s", report)
    return report


def refresh_audience(audience_id: int) -> dict:
    """Refresh one audience now (after its rule changed). Skipped when it is gone, has no rule, or is already being
    refreshed."""
    audience = Audience.objects.filter(pk=audience_id).first()
    if audience is None or (audience.kind == Audience.Kind.RULE_BASED and audience.rule is None):
        return {"refreshed": False}
    return services.audience_refresh(audience=audience, wait=False).as_dict()


def prune_changes() -> int:
    """Schedule (daily): drop membership changes older than DAP_AUDIENCE_CHANGE_RETENTION_DAYS."""
    return services.audience_changes_prune()
