"""The outbox is a queue: rows are inserted and deleted by the hundred thousand. PostgreSQL's default autovacuum
thresholds (20 % of the table) let dead rows pile up between runs, and every claim then walks them in the due index.
Vacuum and analyze it after 1 % churn (at least 5,000 rows) instead. SQLite has no autovacuum of this kind."""

from django.db import migrations

TABLES = ("connectors_delivery",)
SETTINGS = (
    "autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 5000, "
    "autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_vacuum_insert_threshold = 5000, "
    "autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 5000"
)
RESET = (
    "autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_vacuum_insert_scale_factor, "
    "autovacuum_vacuum_insert_threshold, autovacuum_analyze_scale_factor, autovacuum_analyze_threshold"
)


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in TABLES:
            schema_editor.execute(f"ALTER TABLE {name} SET ({SETTINGS})")


def revert(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in TABLES:
            schema_editor.execute(f"ALTER TABLE {name} RESET ({RESET})")


class Migration(migrations.Migration):
    dependencies = [("connectors", "0005_groups_delivery")]

    operations = [migrations.RunPython(apply, revert)]
