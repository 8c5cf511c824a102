"""Template filters for the maintenance task admin pages."""

import json
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder

register = template.Library()


@register.filter
def as_json(value: Any, indent: int | None = None) -> str:
    """Return ``value`` as JSON text (sorted keys; indented when ``indent`` is given)."""
    return json.dumps(value, indent=indent, sort_keys=True, cls=DjangoJSONEncoder, ensure_ascii=False)
