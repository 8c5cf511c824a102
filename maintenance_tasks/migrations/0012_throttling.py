from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("maintenance_tasks", "0011_skipped_items"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="throttled_reason",
            field=models.CharField(blank=True, max_length=255, verbose_name="throttled"),
        ),
        migrations.AddField(
            model_name="run",
            name="throttled_since",
            field=models.DateTimeField(blank=True, null=True, verbose_name="throttled since"),
        ),
        migrations.AddField(
            model_name="run",
            name="throttled_seconds",
            field=models.FloatField(default=0.0, verbose_name="time throttled (s)"),
        ),
    ]
