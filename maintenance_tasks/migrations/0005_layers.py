"""Rename "stuck" runs (active longer than expected) to "overdue" and the scheduler's "tick" to "pass";
validate cron expressions on the field."""

from django.db import migrations, models

import maintenance_tasks.cron


class Migration(migrations.Migration):
    dependencies = [
        ("maintenance_tasks", "0004_background"),
    ]

    operations = [
        migrations.RenameField(model_name="run", old_name="stuck_flagged_at", new_name="overdue_flagged_at"),
        migrations.RenameField(model_name="schedulerstate", old_name="next_tick_at", new_name="next_pass_at"),
        migrations.AlterField(
            model_name="run",
            name="overdue_flagged_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="flagged overdue"),
        ),
        migrations.AlterField(
            model_name="schedule",
            name="cron",
            field=models.CharField(
                blank=True,
                help_text="Five fields: minute hour day-of-month month day-of-week, in the site's time zone.",
                max_length=100,
                validators=[maintenance_tasks.cron.validate_cron],
                verbose_name="cron expression",
            ),
        ),
    ]
