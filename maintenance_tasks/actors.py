"""Who acted on a run, and how that reads: an OS user in a process, or an admin user."""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext as _


def local_actor(source: str, **extra: Any) -> dict[str, Any]:
    """Describe who acts from this process: the OS user, host and process id."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else ""
    return {"source": source, "user": user, "host": socket.gethostname(), "pid": os.getpid(), **extra}


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
