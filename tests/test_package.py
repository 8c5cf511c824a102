"""The app as users get it: a wheel installed into a project that has no checkout of this repo."""

import subprocess
import sys
import textwrap
import zipfile

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(out)],
        check=True,
    )
    return next(out.glob("django_maintenance_runner-*.whl"))


def test_wheel_holds_migrations_templates_and_static_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "maintenance_tasks/migrations/0001_initial.py" in names
    assert "maintenance_tasks/py.typed" in names
    for folder in ("templates", "static"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file():
                assert f"maintenance_tasks/{path.relative_to(ROOT)}" in names
    assert not any(name.startswith(("tests/", "testproject/", "bench/")) for name in names)


PROJECT = {
    "shopsite/__init__.py": "",
    "shopsite/settings.py": """
        SECRET_KEY = "x"
        INSTALLED_APPS = [
            "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
            "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
            "maintenance_tasks", "shop",
        ]
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        USE_TZ = True
        STATIC_URL = "static/"
        STATIC_ROOT = "collected"
        ROOT_URLCONF = "shopsite.urls"
        TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
                      "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                      "django.contrib.auth.context_processors.auth",
                      "django.contrib.messages.context_processors.messages"]}}]
        MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
                      "django.contrib.auth.middleware.AuthenticationMiddleware",
                      "django.contrib.messages.middleware.MessageMiddleware"]
    """,
    "shopsite/urls.py": """
        from django.contrib import admin
        from django.urls import path
        urlpatterns = [path("admin/", admin.site.urls)]
    """,
    "shop/__init__.py": "",
    "shop/models.py": """
        from django.db import models
        class Product(models.Model):
            name = models.CharField(max_length=50)
            code = models.CharField(max_length=50, blank=True)
    """,
    "shop/migrations/__init__.py": "",
    "shop/migrations/0001_initial.py": """
        from django.db import migrations, models
        class Migration(migrations.Migration):
            initial = True
            operations = [migrations.CreateModel("Product", [
                ("id", models.BigAutoField(primary_key=True)),
                ("name", models.CharField(max_length=50)),
                ("code", models.CharField(max_length=50, blank=True)),
            ])]
    """,
    "shop/maintenance.py": """
        from maintenance_tasks import Processor
        from .models import Product
        class FillCodes(Processor):
            \"\"\"Give every product a code.\"\"\"
            prefix: str = "P"
            def collection(self):
                return Product.objects.filter(code="")
            def process(self, product):
                product.code = f"{self.prefix}{product.pk}"
                product.save(update_fields=["code"])
    """,
}


def test_a_project_that_only_installs_the_wheel_works(wheel, tmp_path):
    for name, text in PROJECT.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True, cwd=tmp_path)

    def django(*args):
        return subprocess.run(
            [python, "-m", "django", *args, "--settings=shopsite.settings"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)},
        )

    where = subprocess.run(
        [python, "-c", "import maintenance_tasks; print(maintenance_tasks.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert str(venv) in where.stdout, "the test must use the installed wheel, not the checkout"
    assert django("migrate", "-v0").returncode == 0
    seed = "from shop.models import Product; Product.objects.bulk_create(Product(name=str(i)) for i in range(250))"
    assert django("shell", "-c", seed).returncode == 0
    result = django("run_maintenance_task", "FillCodes", "--arg", "prefix=X")
    assert result.returncode == 0, result.stderr
    assert "250/250 items (100.0%)" in result.stdout
    check = django(
        "shell",
        "-v0",
        "-c",
        "from shop.models import Product; print(Product.objects.filter(code__startswith='X').count())",
    )
    assert check.stdout.strip() == "250"
    assert django("check").returncode == 0
    static = django("collectstatic", "--noinput", "-v0")
    assert static.returncode == 0, static.stderr
    for path in (ROOT / "static").rglob("*"):
        if path.is_file():
            assert (tmp_path / "collected" / path.relative_to(ROOT / "static")).exists()
