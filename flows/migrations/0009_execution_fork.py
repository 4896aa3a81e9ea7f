"""Each branch names the fork that started it (its parent's fork node and visit), so a
parent that forks more than once gathers only the branches of the fork it waits at.

Branches started before this migration get the fork from their parent's steps: the last
fork step the parent began before the branch was created (a parent forks again only after
the branches of its previous fork have all ended)."""
from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce


def forks_of_existing_branches(apps, schema_editor):
    Execution = apps.get_model("flows", "Execution")
    Step = apps.get_model("flows", "Step")
    fork = Step.objects.filter(
        execution_id=OuterRef("parent_id"), node_type="fork",
        started_at__lte=OuterRef("started_at")).order_by("-started_at", "-id")
    Execution.objects.filter(parent__isnull=False).update(
        fork_node=Coalesce(Subquery(fork.values("node_id")[:1]), Value("")),
        fork_visit=Subquery(fork.values("visit")[:1]))


class Migration(migrations.Migration):

    dependencies = [
        ("flows", "0008_execution_branches"),
    ]

    operations = [
        migrations.AddField(
            model_name="execution",
            name="fork_node",
            field=models.CharField(blank=True, default="", max_length=100),
        ),
        migrations.AddField(
            model_name="execution",
            name="fork_visit",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(forks_of_existing_branches, migrations.RunPython.noop),
    ]
