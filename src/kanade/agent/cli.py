"""``kanade-agent``: run the agent in the foreground (service wrappers call this)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from kanade.agent.runtime import Agent
from kanade.agent.settings import load_settings
from kanade.logsetup import configure_logging

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="kanade agent: runs scripts sent through NATS on this machine.",
)


@app.callback()
def _root() -> None:
    """kanade agent."""


@app.command()
def run(
    pc_id: Annotated[
        str | None, typer.Option("--pc-id", help="This machine's id (default: hostname).")
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Group membership (repeatable).")
    ] = None,
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats-url", envvar="KANADE_NATS_URL", help="Broker URL(s), comma separated."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Ledger, outbox and spool directory.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Config file (YAML).")] = None,
    heartbeat_interval: Annotated[
        float | None, typer.Option("--heartbeat-interval", help="Seconds between heartbeats.")
    ] = None,
    max_local_concurrent: Annotated[int | None, typer.Option("--max-local-concurrent")] = None,
    startup_delay_max: Annotated[
        float | None, typer.Option("--startup-delay-max", help="Random start-up delay, seconds.")
    ] = None,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
) -> None:
    """Run one agent in the foreground until SIGTERM / Ctrl-C.

    Example:

      kanade-agent run --pc-id web-1 --group web \\
        --nats-url nats://10.0.0.5:4222 --data-dir /var/lib/kanade
    """
    try:
        settings = load_settings(
            config,
            {
                "pc_id": pc_id,
                "groups": group or None,
                "nats_urls": nats_url,
                "data_dir": data_dir,
                "heartbeat_interval": heartbeat_interval,
                "max_local_concurrent": max_local_concurrent,
                "startup_delay_max": startup_delay_max,
                "log_level": log_level,
            },
        )
    except (ValueError, TypeError, OSError) as exc:
        typer.echo(f"kanade-agent: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level)
    asyncio.run(_serve(settings))


async def _serve(settings: object) -> None:
    from kanade.agent.settings import AgentSettings

    assert isinstance(settings, AgentSettings)
    agent = Agent(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, agent.stop)
    await agent.run()


@app.command()
def swarm(
    agents: Annotated[int, typer.Option("--agents", "-n", help="How many identities.")] = 100,
    prefix: Annotated[str, typer.Option("--prefix", help="pc_id prefix.")] = "sim-",
    nats_url: Annotated[
        str, typer.Option("--nats-url", envvar="KANADE_NATS_URL", help="Broker URL(s).")
    ] = "nats://127.0.0.1:4222",
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="One sub-folder per identity.")
    ] = Path(".kanade/swarm"),
    exec_mode: Annotated[
        str, typer.Option("--exec", help="stub: instant success; real: run the script.")
    ] = "stub",
    groups: Annotated[
        int, typer.Option("--groups", help="Spread identities over this many groups.")
    ] = 0,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="A group for every identity.")
    ] = None,
    heartbeat_interval: Annotated[float, typer.Option("--heartbeat-interval")] = 30.0,
    fsync: Annotated[bool, typer.Option("--fsync/--no-fsync", help="fsync ledger/outbox.")] = False,
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
) -> None:
    """Run N simulated agents in one process through the real agent code (for scale tests).

    Example: kanade-agent swarm --agents 1000 --prefix sim- --exec stub
    """
    from kanade.agent.swarm import Swarm, SwarmSpec

    if exec_mode not in ("stub", "real"):
        typer.echo("kanade-agent swarm: --exec must be stub or real", err=True)
        raise typer.Exit(2)
    if agents < 1:
        typer.echo("kanade-agent swarm: --agents must be >= 1", err=True)
        raise typer.Exit(2)
    configure_logging(log_level)
    spec = SwarmSpec(
        agents=agents,
        prefix=prefix,
        nats_urls=[u for u in nats_url.split(",") if u],
        data_dir=data_dir,
        exec_mode=exec_mode,  # type: ignore[arg-type]
        groups=groups,
        extra_groups=group or [],
        heartbeat_interval=heartbeat_interval,
        durable=fsync,
    )

    async def go() -> None:
        sw = Swarm(spec)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, sw.stop)
        await sw.run(
            on_ready=lambda s: print(
                f"swarm ready: {len(s.agents)} identities in {s.started_in:.1f}s", flush=True
            )
        )

    asyncio.run(go())


def main() -> None:
    app(prog_name="kanade-agent")


if __name__ == "__main__":
    sys.exit(main())
