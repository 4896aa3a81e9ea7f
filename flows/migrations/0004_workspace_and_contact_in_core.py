"""Point the foreign keys at core's models; the tables did not change, so only the state does."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0001_initial'),
        ('flows', '0003_alter_step_started_at'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name='bulkstart',
                name='workspace',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='core.workspace'),
            ),
            migrations.AlterField(
                model_name='execution',
                name='contact',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='executions', to='core.contact'),
            ),
            migrations.AlterField(
                model_name='execution',
                name='workspace',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='executions', to='core.workspace'),
            ),
            migrations.AlterField(
                model_name='flow',
                name='workspace',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='flows', to='core.workspace'),
            ),
            migrations.AlterField(
                model_name='flowschedule',
                name='workspace',
                field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='flow_schedules', to='core.workspace'),
            ),
        ]),
    ]
