"""The job catalog: ``kanade job`` (validate, create, list, show, delete,
approve-unattended) and a job's revocation (``revoke``, ``unrevoke``, ``revocations``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient
from kanade.cli.common import ForceOpt, JsonOpt, UrlOpt, guard, page_items

app = typer.Typer(no_args_is_help=True, help="Job manifests: validate, create, list, show.")


@app.command("validate")
def job_validate(
    file: Annotated[Path, typer.Argument(help="Job manifest (YAML or JSON).")],
    json_: JsonOpt = False,
) -> None:
    """Check a job manifest; exit 1 naming every field path and reason.

    Example: kanade job validate examples/jobs/disk-usage.yaml
    """

    def go() -> None:
        from kanade.cli.documents import read_job_file  # core models: only when reading one

        job = read_job_file(file)
        if json_:
            output.json_line({"ok": True, "id": job.id, "version": job.version})
        else:
            output.out.print(f"{file}: ok (job {job.id} version {job.version})")

    guard(go)


@app.command("create")
def job_create(
    file: Annotated[Path, typer.Argument(help="Job manifest (YAML or JSON).")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Upload a job manifest (script_file is inlined first).

    Example: kanade job create examples/jobs/disk-usage.yaml
    """

    def go() -> None:
        from kanade.cli.documents import read_job_file  # core models: only when reading one

        job = read_job_file(file)
        with ApiClient(url) as api:
            stored = api.post("/api/jobs", job.model_dump(mode="json", exclude_none=True))
        if json_:
            output.json_line(stored)
        else:
            output.out.print(f"job {job.id} version {job.version} stored")

    guard(go)


@app.command("list")
def job_list(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """List the job catalog."""

    def go() -> None:
        with ApiClient(url) as api:
            jobs = api.get("/api/jobs")
        output.listing(
            page_items(jobs),
            json_=json_,
            title="jobs",
            columns=["id", "version", "shell", "timeout", "description"],
            row=lambda j: (
                j.get("id"),
                j.get("version"),
                j.get("execute", {}).get("shell"),
                j.get("execute", {}).get("timeout"),
                j.get("description") or "",
            ),
        )

    guard(go)


@app.command("show")
def job_show(job_id: str, json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Show one job manifest."""

    def go() -> None:
        with ApiClient(url) as api:
            job = api.get(f"/api/jobs/{job_id}")
        if json_:
            output.json_line(job)
        else:
            import yaml

            output.out.print(yaml.safe_dump(job, sort_keys=False).rstrip(), markup=False)

    guard(go)


@app.command("delete")
def job_delete(
    job_id: Annotated[str, typer.Argument(help="The job to delete.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Delete a job from the catalog; it is revoked too, so no agent runs a queued copy.

    Example: kanade job delete disk-cleanup
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.delete(f"/api/jobs/{job_id}")
        if json_:
            output.json_line(res)
        else:
            output.out.print(
                f"job {job_id} (version {res.get('version')}) deleted and revoked; "
                f"`kanade unrevoke {job_id}` before uploading it again",
                markup=False,
            )

    guard(go)


@app.command("approve-unattended")
def job_approve_unattended(
    job_id: Annotated[str, typer.Argument(help="The job.")],
    version: Annotated[str, typer.Argument(help="Its version (the catalog's current one).")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Withdraw the approval.")] = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Let schedules fire this version of a require_approval job unattended.

    Example: kanade job approve-unattended patch-reboot 3
    """

    def go() -> None:
        path = f"/api/jobs/{job_id}/versions/{version}/approve-unattended"
        with ApiClient(url) as api:
            out = api.delete(path) if revoke else api.post(path)
        if json_:
            output.json_line(out)
        elif revoke:
            output.out.print(f"job {job_id} version {version}: unattended runs withdrawn")
        else:
            output.out.print(f"job {job_id} version {version}: approved for unattended runs")

    guard(go)


# --- revocation ---------------------------------------------------------------------------
def revoke(
    job_id: Annotated[str, typer.Argument(help="The job to revoke.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit).")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Revoke a job: agents skip it (exit 126), even offline ones when they return.

    A job not in the catalog is refused with the closest job ids; --force revokes it
    ahead of its upload.

    Example: kanade revoke disk-cleanup --reason "deletes too much"
    """

    def go() -> None:
        with ApiClient(url, options={"job_id": "JOB_ID", "reason": "--reason"}) as api:
            res = api.post(
                f"/api/jobs/{job_id}/revoke",
                {"reason": reason} if reason else None,
                force=force or None,
            )
        if json_:
            output.json_line(res)
        else:
            output.out.print(
                f"job {job_id} revoked"
                + (f" ({reason})" if reason else "")
                + f"; lift with `kanade unrevoke {job_id}`",
                markup=False,
            )

    guard(go)


def unrevoke(
    job_id: Annotated[str, typer.Argument(help="The job to allow again.")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Lift a job's revocation.

    Example: kanade unrevoke disk-cleanup
    """

    def go() -> None:
        with ApiClient(url) as api:
            res = api.post(f"/api/jobs/{job_id}/unrevoke")
        if json_:
            output.json_line(res)
        elif res.get("was_revoked"):
            output.out.print(f"job {job_id} is no longer revoked", markup=False)
        else:
            output.out.print(f"job {job_id} was not revoked; nothing to do", markup=False)

    guard(go)


def revocations(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """List revoked jobs.

    Example: kanade revocations --json
    """

    def go() -> None:
        with ApiClient(url) as api:
            items = api.get("/api/revocations").get("items", [])
        output.listing(
            items,
            json_=json_,
            title="revoked jobs",
            columns=["job", "revoked at", "by", "reason"],
            row=lambda r: (r["job_id"], r.get("revoked_at"), r.get("by"), r.get("reason")),
        )

    guard(go)
