"""Adopt the existing tables of workspaces, API keys and contacts (from messaging) and of
dead letters (from monitoring): the models moved to the bottom app, the rows stay put.

Their content types move too, so the permissions granted on them and their admin history
follow the models instead of being left on a label nothing uses.
"""
import core.models
import django.db.models.deletion
import uuid
from django.db import migrations, models

# Where each moved model's content type was before.
MOVED = {"messaging": ("workspace", "apikey", "contact"), "monitoring": ("deadletter",)}


def adopt_content_types(apps, schema_editor):
    """Relabel the moved models' content types as core's (a new database has none yet)."""
    content_type = apps.get_model("contenttypes", "ContentType")
    rows = content_type.objects.using(schema_editor.connection.alias)
    for old_label, names in MOVED.items():
        for name in names:
            if not rows.filter(app_label="core", model=name).exists():
                rows.filter(app_label=old_label, model=name).update(app_label="core")


def return_content_types(apps, schema_editor):
    """Give the content types back to the apps the models return to."""
    content_type = apps.get_model("contenttypes", "ContentType")
    rows = content_type.objects.using(schema_editor.connection.alias)
    for old_label, names in MOVED.items():
        rows.filter(app_label="core", model__in=names).update(app_label=old_label)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('messaging', '0001_initial'),
        ('monitoring', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='Workspace',
                fields=[
                    ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                    ('name', models.CharField(max_length=200)),
                    ('slug', models.SlugField(max_length=100, unique=True)),
                    ('timezone', models.CharField(default='UTC', max_length=64, validators=[core.models.validate_timezone])),
                    ('settings', models.JSONField(blank=True, default=dict)),
                    ('is_active', models.BooleanField(default=True)),
                    ('webhook_secret', models.CharField(default=core.models.new_webhook_secret, max_length=100)),
                    ('webhook_secret_previous', models.CharField(blank=True, default='', max_length=100)),
                    ('webhook_secret_rotated_at', models.DateTimeField(blank=True, null=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                ],
                options={
                    'db_table': 'messaging_workspace',
                    'ordering': ['name'],
                },
            ),
            migrations.CreateModel(
                name='ApiKey',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(default='default', max_length=100)),
                    ('prefix', models.CharField(max_length=16, unique=True)),
                    ('hashed_key', models.CharField(max_length=64)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('last_used_at', models.DateTimeField(blank=True, null=True)),
                    ('revoked_at', models.DateTimeField(blank=True, null=True)),
                    ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_keys', to='core.workspace')),
                ],
                options={
                    'verbose_name': 'API key',
                    'db_table': 'messaging_apikey',
                    'ordering': ['-created_at'],
                },
            ),
            migrations.CreateModel(
                name='DeadLetter',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('kind', models.CharField(choices=[('message', 'Message'), ('step', 'Step')], max_length=10)),
                    ('source_id', models.CharField(db_index=True, max_length=64)),
                    ('channel', models.CharField(blank=True, default='', max_length=10)),
                    ('flow_id', models.CharField(blank=True, default='', max_length=64)),
                    ('error', models.TextField(blank=True, default='')),
                    ('error_code', models.CharField(blank=True, default='', max_length=50)),
                    ('attempts', models.PositiveIntegerField(default=0)),
                    ('payload', models.JSONField(default=dict)),
                    ('status', models.CharField(choices=[('open', 'Open'), ('replayed', 'Replayed'), ('discarded', 'Discarded')], default='open', max_length=10)),
                    ('replay_count', models.PositiveIntegerField(default=0)),
                    ('replay_result', models.TextField(blank=True, default='')),
                    ('replayed_at', models.DateTimeField(blank=True, null=True)),
                    ('replayed_by', models.CharField(blank=True, default='', max_length=100)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='dead_letters', to='core.workspace')),
                ],
                options={
                    'db_table': 'monitoring_deadletter',
                    'ordering': ['-created_at'],
                    'indexes': [models.Index(fields=['workspace', 'status', '-created_at'], name='monitoring__workspa_37a613_idx')],
                },
            ),
            migrations.CreateModel(
                name='Contact',
                fields=[
                    ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                    ('external_id', models.CharField(blank=True, max_length=200, null=True)),
                    ('first_name', models.CharField(blank=True, default='', max_length=100)),
                    ('last_name', models.CharField(blank=True, default='', max_length=100)),
                    ('phone', models.CharField(blank=True, db_index=True, default='', max_length=20)),
                    ('email', models.EmailField(blank=True, db_index=True, default='', max_length=254)),
                    ('timezone', models.CharField(blank=True, default='', max_length=64, validators=[core.models.validate_timezone])),
                    ('attributes', models.JSONField(blank=True, default=dict)),
                    ('sms_subscribed', models.BooleanField(default=True)),
                    ('email_subscribed', models.BooleanField(default=True)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                    ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='contacts', to='core.workspace')),
                ],
                options={
                    'db_table': 'messaging_contact',
                    'ordering': ['-created_at'],
                    'indexes': [models.Index(fields=['workspace', '-created_at'], name='messaging_c_workspa_2c65c9_idx')],
                    'constraints': [models.UniqueConstraint(condition=models.Q(('external_id__isnull', False)), fields=('workspace', 'external_id'), name='contact_external_id_unique_per_workspace')],
                },
            ),
        ]),
        migrations.RunPython(adopt_content_types, return_content_types),
    ]
