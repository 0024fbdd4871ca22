# AuditEntry and ConfigVersion now belong to the audit app (audit/migrations/0001_initial.py),
# which keeps their tables: only Django's state forgets them here, no table is touched.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('values', '0007_read_budget_widening_prediction'),
        ('audit', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='AuditEntry'),
                migrations.DeleteModel(name='ConfigVersion'),
            ],
            database_operations=[],
        ),
    ]
