from django.apps import AppConfig


class EditorialConfig(AppConfig):
    """Demo of processors in a package: ``maintenance/`` with one module per subject."""

    name = "testproject.editorial"
    label = "editorial"
