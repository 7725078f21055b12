"""A worker process for the fault suite: runs the task `connectors.tasks.dispatch_config(config_id)` over and over
for a number of seconds, as a django-q2 worker runs tasks: stale database connections are closed before each run
and an exception ends that run only (it is printed to stderr, like django-q2 logs a failed task).

    python -m tests.connectors.delivery.worker_loop CONFIG_ID SECONDS
"""

import sys
import time
import traceback

import django


def main(config_id: int, seconds: float) -> None:
    django.setup()
    from django.db import close_old_connections

    from connectors import tasks

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        close_old_connections()
        try:
            tasks.dispatch_config(config_id)
        except Exception:
            traceback.print_exc()
            sys.stderr.flush()
        time.sleep(0.02)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
