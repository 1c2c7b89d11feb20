"""The script an exec runs, for the operators who read it and the approvers who decide on
it: an inline script's text from the ``scripts`` table, a script object's from the object
store, checked against the sha256 pinned at dispatch (docs/dashboard.md, "Script text").
Uploading script objects is :mod:`kanade.backend.services.scripts`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from nats.js.errors import NotFoundError as JsNotFoundError

from kanade.backend.errors import NotFound
from kanade.backend.store import scripts
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.digests import sha256_hex
from kanade.core.scripttext import SCRIPT_TEXT_MAX, bounded_text

log = structlog.get_logger(__name__)


class ExecScriptService:
    def __init__(self, db: Database, bus: Callable[[], Bus]) -> None:
        self._db = db
        self._bus = bus

    async def of_exec(self, exec_id: str) -> dict[str, Any]:
        row = await self._db.read(lambda conn: scripts.exec_script(conn, exec_id))
        if row is None:
            raise NotFound(f"execution {exec_id!r} not found", exec_id=exec_id)
        out: dict[str, Any] = {
            "exec_id": exec_id,
            "kind": row["kind"],
            "job_id": row["job_id"],
            "version": row["version"],
            "sha256": row["script_sha256"],
            "shell": row["script_shell"],
            "source": "object" if row["script_object"] else "inline",
            "object": row["script_object"],
            "text": row["text"],
            "size": row["size"],
            "truncated": bool(row["truncated"]),
            "note": None,
        }
        if not row["script_sha256"]:
            out["note"] = "not recorded: the execution was created before scripts were kept"
        elif row["script_object"]:
            out.update(await self._object_text(str(row["script_object"]), row["script_sha256"]))
        elif row["text"] is None:
            out["note"] = "the text of this script is no longer stored"
        return out

    async def _object_text(self, name: str, sha256: str) -> dict[str, Any]:
        store = await self._bus().obj(subjects.OBJ_SCRIPTS)
        try:
            info = await store.get_info(name)
        except JsNotFoundError:
            return {"note": f"script object {name!r} is no longer in the scripts store"}
        size = int(info.size or 0)
        if size > SCRIPT_TEXT_MAX:
            return {"size": size, "note": f"script object {name!r} is too large to show here"}
        data = bytes((await store.get(name)).data or b"")
        if sha256_hex(data) != sha256:
            # Re-uploaded under the same name since: what it holds now is not what ran.
            log.warning("script object does not match its pinned digest", object=name)
            return {
                "size": len(data),
                "note": f"script object {name!r} has changed since this execution was sent",
            }
        text, cut = bounded_text(data.decode(errors="replace"))
        return {"text": text, "size": len(data), "truncated": cut}
