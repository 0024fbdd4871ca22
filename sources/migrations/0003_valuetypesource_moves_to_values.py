# ValueTypeSource (which value types a source feeds) now belongs to the values app
# (values/migrations/0009_valuetypesource_from_sources.py), which keeps its table: only Django's
# state forgets it here, no table is touched.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('sources', '0002_source_call'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ValueTypeSource')],
            database_operations=[],
        ),
    ]
