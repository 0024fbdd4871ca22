# The audit log and the configuration version move here from the values app (the layering of
# docs/architecture.md). Their tables stay as the values app made them: only Django's state moves.

from django.db import migrations, models


def rename_content_types(apps, schema_editor, old_app, new_app):
    # Permissions granted on the moved models are kept with their content types.
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label=old_app, model__in=["auditentry", "configversion"]).update(app_label=new_app)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('values', '0007_read_budget_widening_prediction'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AuditEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('actor', models.CharField(help_text='User name, or the command that acted.', max_length=150)),
                        ('channel', models.CharField(help_text='admin, sync_config, api, ...', max_length=30)),
                        ('action', models.CharField(choices=[('create', 'Create'), ('update', 'Update'), ('delete', 'Delete')], max_length=10)),
                        ('object_type', models.CharField(help_text='app_label.model', max_length=100)),
                        ('object_id', models.CharField(max_length=64)),
                        ('object_repr', models.CharField(max_length=200)),
                        ('before', models.JSONField(blank=True, null=True)),
                        ('after', models.JSONField(blank=True, null=True)),
                        ('reason', models.TextField(blank=True)),
                    ],
                    options={
                        'verbose_name_plural': 'audit entries',
                        'ordering': ['-created_at', '-id'],
                        'indexes': [models.Index(fields=['object_type', 'object_id'], name='values_audi_object__db2600_idx')],
                        'db_table': 'values_auditentry',
                    },
                ),
                migrations.CreateModel(
                    name='ConfigVersion',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('version', models.BigIntegerField(default=0)),
                        ('data_version', models.BigIntegerField(default=0)),
                    ],
                    options={
                        'verbose_name': 'configuration version',
                        'db_table': 'values_configversion',
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(
            lambda apps, editor: rename_content_types(apps, editor, "values", "audit"),
            lambda apps, editor: rename_content_types(apps, editor, "audit", "values"),
        ),
    ]
