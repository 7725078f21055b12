from django.core.management.base import BaseCommand

from connectors.demo import ADMIN_PASSWORD, ADMIN_USERNAME, load_demo


class Command(BaseCommand):
    help = "Load the demo data (idempotent): admin user, connectors, an audience and a journey using them."

    def handle(self, *args, **options):
        created = load_demo()
        for line in created:
            self.stdout.write(f"created {line}")
        if not created:
            self.stdout.write("demo data already present")
        self.stdout.write(f"admin login: {ADMIN_USERNAME} / {ADMIN_PASSWORD}")
