"""Dead letters and workspaces now belong to core; the tables did not change, so only the state
does."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0001_initial'),
        ('monitoring', '0002_alerts_and_replay_audit'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name='alertevent',
                name='workspace',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alert_events', to='core.workspace'),
            ),
            migrations.AlterField(
                model_name='alertrule',
                name='workspace',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alert_rules', to='core.workspace'),
            ),
            migrations.DeleteModel(
                name='DeadLetter',
            ),
        ]),
    ]
