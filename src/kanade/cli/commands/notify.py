"""``kanade notify``: webhooks that hear of failures (add, list, show, set, enable, disable,
rm, test) and their deliveries (deliveries, retry). Secrets come from a file or stdin,
never from an argument (every local user can read a process's arguments)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError
from kanade.cli.common import JsonOpt, LimitOpt, UrlOpt, guard, page_items

EVENTS = ("exec.failed, schedule.skipped, schedule.missed, agent.offline, rollout.halted, "
          "agent.quarantined")  # fmt: skip

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Webhooks (generic JSON, signed; or Slack-compatible) told about failures: "
        f"{EVENTS}.\n\n"
        "Examples:\n\n"
        "  kanade notify add ops --to https://alerts.example/hook --secret-file hmac.key\n\n"
        "  kanade notify add chat --slack --to-file slack-url.txt --event exec.failed\n\n"
        "  kanade notify test ops\n\n"
        "  kanade notify deliveries --status failed"
    ),
)

EventOpt = Annotated[
    list[str] | None,
    typer.Option("--event", "-e", help=f"An event kind (repeatable; default all): {EVENTS}."),
]
ToOpt = Annotated[str | None, typer.Option("--to", help="The webhook's URL: where to POST.")]
ToFileOpt = Annotated[
    Path | None,
    typer.Option("--to-file", help="Read the webhook's URL from a file (a Slack URL is a secret)."),
]
SecretFileOpt = Annotated[
    Path | None,
    typer.Option("--secret-file", help="Read the HMAC-SHA256 signing key from a file."),
]
SecretStdinOpt = Annotated[
    bool, typer.Option("--secret-stdin", help="Read the signing key from stdin's first line.")
]
OfflineOpt = Annotated[
    str | None,
    typer.Option("--offline-after", help="agent.offline: a silence longer than this (1m-30d)."),
]


def _first_line(path: Path, option: str) -> str:
    try:
        value = path.read_text().strip().splitlines()
    except OSError as exc:
        raise CliError(f"{option}: cannot read {path}: {exc.strerror}") from None
    if not value or not value[0].strip():
        raise CliError(f"{option}: {path} is empty")
    return value[0].strip()


def _url(url: str | None, url_file: Path | None, *, required: bool) -> str | None:
    if url and url_file:
        raise CliError("give --to or --to-file, not both")
    if url_file is not None:
        return _first_line(url_file, "--to-file")
    if url is None and required:
        raise CliError("--to URL (or --to-file FILE) is required: where the webhook is")
    return url


def _secret(secret_file: Path | None, secret_stdin: bool) -> str | None:
    if secret_file and secret_stdin:
        raise CliError("give --secret-file or --secret-stdin, not both")
    if secret_file is not None:
        return _first_line(secret_file, "--secret-file")
    if secret_stdin:
        line = sys.stdin.readline().strip()
        if not line:
            raise CliError("--secret-stdin: stdin is empty")
        return line
    return None


def _last(hook: Mapping[str, Any]) -> str:
    last = hook.get("last_delivery")
    if not last:
        return "-"
    code = last.get("status_code")
    what = f"HTTP {code}" if code else (last.get("error") or "-")
    return f"{last.get('status')} ({what}) at {last.get('at')}"


def _print_hook(hook: dict[str, Any], json_: bool) -> None:
    if json_:
        output.json_line(hook)
        return
    counts = hook.get("deliveries") or {}
    output.out.print(
        f"{hook['id']}: {hook['kind']} → {hook['url']}"
        f"{' (signed)' if hook.get('has_secret') else ''}"
        f"{'' if hook.get('enabled') else ' [disabled]'}\n"
        f"  events: {', '.join(hook.get('events') or [])}; offline after "
        f"{hook.get('offline_after')}\n"
        f"  deliveries: {counts.get('pending', 0)} pending, {counts.get('delivered', 0)} "
        f"delivered, {counts.get('failed', 0)} failed; last: {_last(hook)}",
        markup=False,
    )


def _delivery_row(d: Mapping[str, Any]) -> list[Any]:
    when = d.get("delivered_at") or d.get("next_attempt_at") or d.get("last_attempt_at") or "-"
    return [
        d["delivery_id"], d["webhook"], d["kind"], d["status"], d["attempts"],
        d.get("last_status_code") or "-", d.get("last_error") or "-", when, d["summary"],
    ]  # fmt: skip


DELIVERY_COLUMNS = ("delivery", "webhook", "kind", "status", "attempts", "code", "error",
                    "when", "summary")  # fmt: skip


@app.command("add")
def notify_add(
    webhook_id: Annotated[str, typer.Argument(metavar="ID", help="A name for the webhook.")],
    to: ToOpt = None,
    to_file: ToFileOpt = None,
    slack: Annotated[bool, typer.Option("--slack", help="A Slack-compatible webhook.")] = False,
    secret_file: SecretFileOpt = None,
    secret_stdin: SecretStdinOpt = False,
    event: EventOpt = None,
    offline_after: OfflineOpt = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it switched off.")] = False,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Add a webhook (admin).

    Example: kanade notify add ops --to https://alerts.example/hook --secret-file hmac.key
    """

    def go() -> None:
        body: dict[str, Any] = {
            "id": webhook_id,
            "kind": "slack" if slack else "generic",
            "url": _url(to, to_file, required=True),
            "enabled": not disabled,
        }
        secret = _secret(secret_file, secret_stdin)
        if secret is not None:
            body["secret"] = secret
        if event:
            body["events"] = event
        if offline_after is not None:
            body["offline_after"] = offline_after
        with ApiClient(url) as api:
            _print_hook(api.post("/api/notify/webhooks", body), json_)

    guard(go)


@app.command("list")
def notify_list(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """Webhooks with their delivery counts and newest attempt."""

    def go() -> None:
        with ApiClient(url) as api:
            items = page_items(api.get("/api/notify/webhooks"))
        output.listing(
            items, json_=json_, title="webhooks",
            columns=("id", "kind", "url", "events", "enabled", "pending", "failed", "last"),
            row=lambda h: [
                h["id"], h["kind"], h["url"] + (" (signed)" if h["has_secret"] else ""),
                ", ".join(h["events"]), "yes" if h["enabled"] else "no",
                h["deliveries"].get("pending", 0), h["deliveries"].get("failed", 0), _last(h),
            ],
        )  # fmt: skip

    guard(go)


@app.command("show")
def notify_show(
    webhook_id: Annotated[str, typer.Argument(metavar="ID")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """One webhook and its recent deliveries."""

    def go() -> None:
        with ApiClient(url) as api:
            hook = api.get(f"/api/notify/webhooks/{webhook_id}")
        if json_:
            output.json_line(hook)
            return
        _print_hook(hook, False)
        output.table("recent deliveries", DELIVERY_COLUMNS,
                     [_delivery_row(d) for d in hook.get("recent", [])])  # fmt: skip

    guard(go)


def _patch(webhook_id: str, body: dict[str, Any], json_: bool, url: str | None) -> None:
    with ApiClient(url) as api:
        _print_hook(api.request("PATCH", f"/api/notify/webhooks/{webhook_id}", json=body), json_)


@app.command("set")
def notify_set(
    webhook_id: Annotated[str, typer.Argument(metavar="ID")],
    to: ToOpt = None,
    to_file: ToFileOpt = None,
    secret_file: SecretFileOpt = None,
    secret_stdin: SecretStdinOpt = False,
    no_secret: Annotated[bool, typer.Option("--no-secret", help="Stop signing.")] = False,
    event: EventOpt = None,
    offline_after: OfflineOpt = None,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Change a webhook (admin): only what is given changes.

    Example: kanade notify set ops --event exec.failed --event rollout.halted
    """

    def go() -> None:
        body: dict[str, Any] = {}
        new_url = _url(to, to_file, required=False)
        if new_url is not None:
            body["url"] = new_url
        secret = _secret(secret_file, secret_stdin)
        if secret is not None and no_secret:
            raise CliError("give a new secret or --no-secret, not both")
        if secret is not None or no_secret:
            body["secret"] = secret
        if event:
            body["events"] = event
        if offline_after is not None:
            body["offline_after"] = offline_after
        if not body:
            raise CliError("nothing to change: give --to, a secret, --event or --offline-after")
        _patch(webhook_id, body, json_, url)

    guard(go)


@app.command("enable")
def notify_enable(
    webhook_id: Annotated[str, typer.Argument(metavar="ID")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Switch a webhook on (admin); deliveries it held go out."""
    guard(lambda: _patch(webhook_id, {"enabled": True}, json_, url))


@app.command("disable")
def notify_disable(
    webhook_id: Annotated[str, typer.Argument(metavar="ID")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Switch a webhook off (admin): it hears of nothing until enabled again."""
    guard(lambda: _patch(webhook_id, {"enabled": False}, json_, url))


@app.command("rm")
def notify_rm(
    webhook_id: Annotated[str, typer.Argument(metavar="ID")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Remove a webhook and its unsent deliveries (admin)."""

    def go() -> None:
        with ApiClient(url) as api:
            res = api.delete(f"/api/notify/webhooks/{webhook_id}")
        if json_:
            output.json_line(res)
        else:
            output.out.print(f"removed webhook {webhook_id}", markup=False)

    guard(go)


@app.command("test")
def notify_test(
    webhook_id: Annotated[str, typer.Argument(metavar="ID")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Send a test notification now and say how it went (exit 1 if it was not delivered)."""

    def go() -> None:
        with ApiClient(url) as api:
            res = api.post(f"/api/notify/webhooks/{webhook_id}/test")
        if json_:
            output.json_line(res)
        elif res.get("ok"):
            output.out.print(
                f"delivered to {webhook_id}: HTTP {res.get('last_status_code')} in "
                f"{res.get('ms')} ms (delivery {res['delivery_id']})",
                markup=False,
            )
        if not res.get("ok"):
            raise CliError(f"not delivered to {webhook_id}: {res.get('last_error')}")

    guard(go)


@app.command("deliveries")
def notify_deliveries(
    webhook: Annotated[str | None, typer.Option("--webhook", "-w", help="One webhook.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="pending, delivered or failed.")
    ] = None,
    limit: LimitOpt = 50,
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Deliveries, newest first: status, attempts, the last status code and error."""

    def go() -> None:
        with ApiClient(url) as api:
            items = page_items(
                api.get("/api/notify/deliveries", webhook=webhook, status=status, limit=limit)
            )
        output.listing(items, json_=json_, title="deliveries", columns=DELIVERY_COLUMNS,
                       row=_delivery_row)  # fmt: skip

    guard(go)


@app.command("retry")
def notify_retry(
    delivery_id: Annotated[str, typer.Argument(metavar="DELIVERY")],
    json_: JsonOpt = False,
    url: UrlOpt = None,
) -> None:
    """Try a failed delivery again, with a fresh allowance of attempts (admin)."""

    def go() -> None:
        with ApiClient(url) as api:
            res = api.post(f"/api/notify/deliveries/{delivery_id}/retry")
        if json_:
            output.json_line(res)
        else:
            output.out.print(f"delivery {delivery_id} is {res['status']} again", markup=False)

    guard(go)
