from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("testapp", "0002_batchlog"),
    ]

    operations = [
        migrations.CreateModel(
            name="BenchRow",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("counter", models.IntegerField(default=0)),
                ("text", models.TextField(default="")),
            ],
        ),
        migrations.CreateModel(
            name="BenchCursor",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("cursor", models.TextField(default="")),
            ],
        ),
    ]
