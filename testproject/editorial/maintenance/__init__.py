"""The editorial team's maintenance tasks, one module per subject (``titles``, ``publishing``)."""
