"""``kanade jetstream setup|status``: the broker side, talked to directly over NATS.

The backend creates every stream, bucket and object store at start-up; `setup`
does the same without a backend (e.g. before the first agents connect, or to
repair a drifted config), and `status` shows what the broker holds and how close
each stream is to its limits.

The broker admits no anonymous client (SPEC §8.1): these verbs connect with the
operator credential (manage streams and buckets; never publish a command) and the
deployment's CA, both written by ``kanade up`` into ``<data_dir>/security``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import CliError
from kanade.cli.common import JsonOpt, guard

if TYPE_CHECKING:
    from kanade.bus.credentials import BusCredentials

app = typer.Typer(no_args_is_help=True, help="The broker's streams and buckets.")

DEFAULT_URL = "tls://127.0.0.1:4222"

NatsOpt = Annotated[
    str | None,
    typer.Option("--nats-url", envvar="KANADE_NATS_URL",
                 help=f"Broker URL (default {DEFAULT_URL}); a cluster: every node's, "
                 "comma separated."),
]
CredsOpt = Annotated[
    Path | None,
    typer.Option("--creds", help="NATS creds file of the operator identity "
                 "(or $KANADE_NATS_CREDS; kanade up: <data_dir>/security/operator.creds)."),
]
CaOpt = Annotated[
    Path | None,
    typer.Option("--ca", help="The broker's CA certificate "
                 "(or $KANADE_NATS_CA; kanade up: <data_dir>/security/ca.pem)."),
]

_HOW = (
    "set --creds and --ca (or $KANADE_NATS_CREDS and $KANADE_NATS_CA); "
    "`kanade up` writes them as <data_dir>/security/operator.creds and "
    "<data_dir>/security/ca.pem"
)


def _url(url: str | None) -> list[str]:
    raw = url or os.environ.get("KANADE_NATS_URL") or DEFAULT_URL
    return [u.strip() for u in raw.split(",") if u.strip()] or [DEFAULT_URL]


def operator_credentials(creds: Path | None, ca: Path | None) -> BusCredentials:
    """The operator identity from the flags, else from the environment; never anonymous."""
    from kanade.bus.credentials import BusCredentials, CredentialsError
    from kanade.security.permissions import OPERATOR_INBOX_PREFIX

    try:
        if creds is None and ca is None:
            found = BusCredentials.from_env(inbox_prefix=OPERATOR_INBOX_PREFIX)
        elif creds is None or ca is None:
            raise CredentialsError(f"{'--creds' if creds is None else '--ca'} is missing")
        else:
            found = BusCredentials(creds, ca, OPERATOR_INBOX_PREFIX)
        if found is None:
            raise CredentialsError("the broker admits no anonymous client")
        found.check()
    except CredentialsError as exc:
        raise CliError(f"{exc}: {_HOW}") from None
    return found


async def _with_js(url: list[str], credentials: BusCredentials, work: Any) -> Any:
    from kanade.bus.connection import BusConnectError, connect

    try:
        nc = await connect(url, name="kanade-cli", retry_forever=False, deadline=5.0,
                           credentials=credentials)
    except BusConnectError as exc:
        raise CliError(
            f"{exc}; is the broker running (--nats-url or $KANADE_NATS_URL), and are "
            f"{credentials.creds_file} and {credentials.ca_file} this deployment's "
            "operator credential and CA?"
        ) from exc
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


@app.command("setup")
def setup(
    url: NatsOpt = None,
    creds: CredsOpt = None,
    ca: CaOpt = None,
    replicas: Annotated[
        int,
        typer.Option("--replicas", min=0, max=5,
                     help="Copies of each stream (0 = 3 on a cluster of 3+, else 1; "
                     "never fewer than a stream has)."),
    ] = 0,
) -> None:
    """Create or update every stream, KV bucket and object store kanade uses (idempotent).

    Example: kanade jetstream setup --nats-url tls://broker:4222 --creds operator.creds --ca ca.pem
    """
    from kanade.bus.topology import ensure_topology

    async def ensure(js: Any) -> None:
        # The operator identity may not touch consumers; a backend scales its own
        # consumers to their stream's replicas when it next starts.
        await ensure_topology(js, replicas=replicas or None, consumers=False)

    def go() -> None:
        asyncio.run(_with_js(_url(url), operator_credentials(creds, ca), ensure))
        output.out.print("streams, KV buckets and object stores are in place")

    guard(go)


@app.command("status")
def status(
    url: NatsOpt = None, creds: CredsOpt = None, ca: CaOpt = None, json_: JsonOpt = False
) -> None:
    """Every stream with its messages, bytes, consumers and limits.

    Example: kanade jetstream status
    """

    async def collect(js: Any) -> list[dict[str, Any]]:
        rows = []
        for info in await js.streams_info():
            cfg, st = info.config, info.state
            rows.append({
                "stream": cfg.name,
                "messages": st.messages,
                "bytes": st.bytes,
                "max_bytes": cfg.max_bytes,
                "used": round(st.bytes / cfg.max_bytes, 4) if cfg.max_bytes and cfg.max_bytes > 0
                else None,
                "consumers": st.consumer_count,
                "replicas": cfg.num_replicas or 1,
                "max_age_s": cfg.max_age,
            })
        return sorted(rows, key=lambda r: r["stream"])

    def go() -> None:
        rows = asyncio.run(_with_js(_url(url), operator_credentials(creds, ca), collect))
        output.listing(
            rows,
            json_=json_,
            title="jetstream",
            columns=["stream", "messages", "bytes", "of max", "consumers", "replicas"],
            row=lambda r: (r["stream"], r["messages"], r["bytes"],
                           "-" if r["used"] is None else f"{r['used']:.1%}", r["consumers"],
                           r["replicas"]),
        )

    guard(go)


@app.command("migrate")
def migrate(
    source: Annotated[str, typer.Option("--from", help="The single broker's URL.")],
    url: NatsOpt = None,
    creds: Annotated[
        Path, typer.Option("--creds", help="The backend's creds file (backend.creds): only the "
                           "backend identity may snapshot and restore streams.")
    ] = Path("backend.creds"),
    ca: Annotated[Path, typer.Option("--ca", help="The deployment's CA (ca.pem).")] = Path(
        "ca.pem"
    ),
) -> None:
    """Move every stream of a single broker into a cluster, whole: messages with their
    sequence numbers and times, KV buckets, durable consumers with their ack state. Run it
    with no backend running; start the backends on the cluster afterwards (they make every
    stream R3). Streams the cluster already has are left alone, so it can be run again.

    Example: kanade jetstream migrate --from tls://old:4222 --nats-url tls://a:4222,tls://b:4222
    --creds backend.creds --ca ca.pem
    """
    from kanade.bus.credentials import BusCredentials, CredentialsError

    credentials = BusCredentials(creds, ca)
    try:
        credentials.check()
    except CredentialsError as exc:
        raise CliError(f"{exc}: pass --creds backend.creds and --ca ca.pem") from None

    async def go() -> list[Any]:
        from kanade.bus.connection import BusConnectError, connect
        from kanade.bus.migrate import copy_streams

        try:
            old = await connect(source, name="kanade-migrate", retry_forever=False,
                                deadline=10.0, credentials=credentials)
            new = await connect(_url(url), name="kanade-migrate", retry_forever=False,
                                deadline=10.0, credentials=credentials)
        except BusConnectError as exc:
            raise CliError(str(exc)) from exc
        try:
            return await copy_streams(old, new)
        finally:
            await old.close()
            await new.close()

    def run() -> None:
        done = asyncio.run(go())
        output.listing(
            [{"stream": d.stream, "messages": d.messages, "bytes": d.bytes,
              "copied": not d.skipped} for d in done],
            json_=False, title="migrated",
            columns=["stream", "messages", "bytes", "copied"],
            row=lambda r: (r["stream"], r["messages"], r["bytes"],
                           "yes" if r["copied"] else "already there"),
        )

    guard(run)
