from django.core.management.base import BaseCommand, CommandError

from connectors.sandbox.server import CONTROL_ENDPOINTS, PARTNER_ENDPOINTS, SandboxServer, is_loopback


class Command(BaseCommand):
    help = (
        "Run the local partner sandbox (emulated Meta Custom Audiences and webhook endpoints with fault injection) "
        "on a loopback address until Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Loopback address to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8765, help="Port to listen on (default 8765; 0 = any free).")

    def handle(self, *args, host: str, port: int, **options):
        if not is_loopback(host):
            raise CommandError(
                f"Refusing to listen on {host!r}: the partner sandbox accepts any credentials and only listens on "
                "loopback addresses (127.0.0.1, ::1, localhost)."
            )
        if not 0 <= port <= 65535:
            raise CommandError(f"Invalid port {port}.")
        try:
            server = SandboxServer(host, port)
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from exc

        write = self.stdout.write
        write(self.style.SUCCESS(f"Partner sandbox listening on {server.url}"))
        write(f"Per-configuration scope: point a base URL at {server.url}/c/<scope> (no prefix = scope 'default').")
        write("Partner endpoints:")
        for method, path, what in PARTNER_ENDPOINTS:
            write(f"  {method:<12} {server.url}{path}  ({what})")
        write("Control endpoints (JSON):")
        for method, path, what in CONTROL_ENDPOINTS:
            write(f"  {method:<12} {server.url}{path}  ({what})")
        write("Press Ctrl-C to stop.")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            write("Stopping the partner sandbox.")
        finally:
            server.stop()
