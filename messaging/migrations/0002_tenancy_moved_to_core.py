"""Workspaces, API keys and contacts now belong to core; the tables did not change, so only the
state does."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0001_initial'),
        ('flows', '0004_workspace_and_contact_in_core'),
        ('messaging', '0001_initial'),
        ('monitoring', '0003_workspace_and_dead_letter_in_core'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveField(
                model_name='contact',
                name='workspace',
            ),
            migrations.AlterField(
                model_name='message',
                name='contact',
                field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='messages', to='core.contact'),
            ),
            migrations.AlterField(
                model_name='idempotencyrecord',
                name='workspace',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='core.workspace'),
            ),
            migrations.AlterField(
                model_name='message',
                name='workspace',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='core.workspace'),
            ),
            migrations.DeleteModel(
                name='ApiKey',
            ),
            migrations.DeleteModel(
                name='Contact',
            ),
            migrations.DeleteModel(
                name='Workspace',
            ),
        ]),
    ]
