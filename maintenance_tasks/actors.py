"""Who acted on a run, and how that reads: an OS user in a process, or an admin user."""

from __future__ import annotations

import getpass
import json
import os
import socket
from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext as _

from .exceptions import storable


def local_actor(source: str, **extra: Any) -> dict[str, Any]:
    """Describe who acts from this process: the OS user, host and process id."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else ""
    return {"source": source, "user": user, "host": socket.gethostname(), "pid": os.getpid(), **extra}


#: What a command line value is recorded as: never the value itself.
HIDDEN = "…"


def hidden(value: str) -> str:
    """Return a command line value with only its names left: ``name=…``, ``{"name": "…"}`` or ``…``."""
    name, sep, _ = value.partition("=")
    if sep and name.strip() and not name.lstrip().startswith(("{", "[")):
        return f"{name.strip()}={HIDDEN}"
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return HIDDEN
    if isinstance(parsed, dict):
        return json.dumps(dict.fromkeys(map(str, parsed), HIDDEN), ensure_ascii=False)
    return HIDDEN


def command_line(argv: list[str]) -> list[str]:
    """Return a command line as recorded in runs and events: the command, options and names, no values.

    ``["run_maintenance_task", "Proc", "--arg", "api_token=s3cret"]`` reads back as
    ``["run_maintenance_task", "Proc", "--arg", "api_token=…"]``: whoever may view runs never sees
    a value given on the command line. Positional arguments are kept (the processor) unless they
    follow an option or ``--``, which may take them as values; text no database stores is escaped.
    """
    recorded, value_next, rest_hidden = argv[:1], False, False
    for word in argv[1:]:
        if rest_hidden:
            kept = hidden(word)
        elif word == "--":
            kept, rest_hidden = word, True
        elif word.startswith("-") and len(word) > 1:
            option, sep, value = word.partition("=")
            kept, value_next = (f"{option}={hidden(value)}", False) if sep else (option, True)
        elif value_next:
            kept, value_next = hidden(word), False
        else:
            kept = word
        recorded.append(kept)
    return [storable(word, 1000) for word in recorded]


def admin_actor(request: HttpRequest) -> dict[str, Any]:
    """Describe the admin user acting in this request."""
    return {
        "source": "admin",
        "user": request.user.get_username(),
        "user_id": request.user.pk,
        "ip": request.META.get("REMOTE_ADDR", ""),
    }


def describe(actor: dict[str, Any]) -> str:
    """Return who acted and from where, in words."""
    if not actor:
        return ""
    source, user = actor.get("source", ""), actor.get("user", "")
    where = {
        "admin": _("admin user %(user)s") % {"user": user},
        "cli": _("command line, OS user %(user)s") % {"user": user},
        "python": _("Python API, OS user %(user)s") % {"user": user},
        "deploy": _("deploy hook, OS user %(user)s") % {"user": user},
        "engine": _("executor"),
        "schedule": _("schedule %(id)s") % {"id": actor.get("schedule", "?")},
    }.get(source, f"{source} {user}".strip())
    if actor.get("changed_by"):
        where = _("%(where)s, set by %(who)s") % {"where": where, "who": describe(actor["changed_by"])}
    extra = [f"{key} {actor[key]}" for key in ("host", "pid", "ip") if actor.get(key)]
    return f"{where} ({', '.join(extra)})" if extra else where
