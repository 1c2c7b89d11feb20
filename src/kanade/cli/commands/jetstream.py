"""``kanade jetstream setup|status``: the broker side, talked to directly over NATS.

The backend creates every stream, bucket and object store at start-up; `setup`
does the same without a backend (e.g. before the first agents connect, or to
repair a drifted config), and `status` shows what the broker holds and how close
each stream is to its limits.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

import typer

from kanade.cli import output
from kanade.cli.client import CliError
from kanade.cli.common import JsonOpt, guard

app = typer.Typer(no_args_is_help=True, help="The broker's streams and buckets.")

NatsOpt = Annotated[
    str | None,
    typer.Option("--nats-url", envvar="KANADE_NATS_URL",
                 help="Broker URL (default nats://127.0.0.1:4222)."),
]


def _url(url: str | None) -> str:
    return url or os.environ.get("KANADE_NATS_URL") or "nats://127.0.0.1:4222"


async def _with_js(url: str, work: Any) -> Any:
    from kanade.bus.connection import BusConnectError, connect

    try:
        nc = await connect(url, name="kanade-cli", retry_forever=False, deadline=5.0)
    except BusConnectError as exc:
        raise CliError(f"{exc}; is the broker running? set --nats-url or $KANADE_NATS_URL"
                       ) from exc
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


@app.command("setup")
def setup(url: NatsOpt = None) -> None:
    """Create or update every stream, KV bucket and object store kanade uses (idempotent).

    Example: kanade jetstream setup --nats-url nats://broker:4222
    """
    from kanade.bus.topology import ensure_topology

    guard(lambda: asyncio.run(_with_js(_url(url), ensure_topology)))
    output.out.print("streams, KV buckets and object stores are in place")


@app.command("status")
def status(url: NatsOpt = None, json_: JsonOpt = False) -> None:
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
                "max_age_s": cfg.max_age,
            })
        return sorted(rows, key=lambda r: r["stream"])

    def go() -> None:
        rows = asyncio.run(_with_js(_url(url), collect))
        output.listing(
            rows,
            json_=json_,
            title="jetstream",
            columns=["stream", "messages", "bytes", "of max", "consumers"],
            row=lambda r: (r["stream"], r["messages"], r["bytes"],
                           "-" if r["used"] is None else f"{r['used']:.1%}", r["consumers"]),
        )

    guard(go)
