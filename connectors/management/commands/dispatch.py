"""Drain the outbox now, in this process, with the worker's own code (operators, tests, the benchmark)."""

import json
import time

from django.core.management.base import BaseCommand, CommandError

from connectors.delivery import dispatcher
from connectors.models import PartnerConfig


class Command(BaseCommand):
    help = "Send what is due for one configuration (--config) or for every configuration with due work."

    def add_arguments(self, parser):
        parser.add_argument("--config", type=int, help="PartnerConfig id")
        parser.add_argument("--budget", type=float, default=None, help="seconds per configuration (default setting)")
        parser.add_argument(
            "--loop", type=float, default=0, help="keep dispatching whatever is due for this many seconds"
        )

    def handle(self, *args, config=None, budget=None, loop=0, **options):
        if config is not None and not PartnerConfig.objects.filter(pk=config).exists():
            raise CommandError(f"No partner configuration with id {config}.")
        if loop < 0:
            raise CommandError("--loop takes a number of seconds (0 or more).")
        end = time.monotonic() + loop
        while True:
            self._pass(config, budget)
            if time.monotonic() >= end:
                return
            time.sleep(0.02)

    def _pass(self, config, budget):
        ids = [config] if config is not None else dispatcher.due_config_ids()
        for config_id in ids:
            report = dispatcher.dispatch_config(config_id, budget_seconds=budget)
            self.stdout.write(
                json.dumps(
                    {
                        "config": config_id,
                        "lease_busy": report.lease_busy,
                        "paused": report.paused,
                        "accumulating": report.accumulating,
                        "claimed": report.claimed,
                        "outcomes": dict(report.outcomes),
                        "retried": report.retried,
                        "more_due": report.more_due,
                    }
                )
            )
