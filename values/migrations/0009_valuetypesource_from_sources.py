# ValueTypeSource moves here from the sources app (the layering of docs/architecture.md: sources
# do not know value types). Its table stays `sources_valuetypesource`; only Django's state moves,
# and its content type is renamed, so that permissions granted on it are kept.

import django.db.models.deletion
from django.db import migrations, models


def rename_content_type(apps, schema_editor, old_app, new_app):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label=old_app, model="valuetypesource").update(app_label=new_app)


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('sources', '0003_valuetypesource_moves_to_values'),
        ('values', '0008_audit_moves_to_its_own_app'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ValueTypeSource',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('tier', models.CharField(choices=[('primary', 'Primary'), ('secondary', 'Secondary'), ('tertiary', 'Tertiary')], default='primary', max_length=10)),
                        ('weight', models.FloatField(help_text="Share in the tier's blend, in (0, 1].")),
                        ('channels', models.JSONField(blank=True, default=list, help_text='Channels this source covers; empty: all.')),
                        ('request_params', models.JSONField(blank=True, default=dict)),
                        ('field_mapping', models.JSONField(blank=True, default=dict, help_text="Overrides the source's field mapping for this type.")),
                        ('source', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='value_type_links', to='sources.source')),
                        ('value_type', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='source_links', to='values.valuetype')),
                    ],
                    options={
                        'verbose_name': 'value type source',
                        'ordering': ['value_type__key', 'tier', 'source__name'],
                        'constraints': [models.UniqueConstraint(fields=('value_type', 'source'), name='unique_value_type_source')],
                        'db_table': 'sources_valuetypesource',
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(
            lambda apps, editor: rename_content_type(apps, editor, "sources", "values"),
            lambda apps, editor: rename_content_type(apps, editor, "values", "sources"),
        ),
    ]
