"""``kanade-agent``: run the agent in the foreground (service wrappers call this).

Deliberately built on argparse and stdlib logging rather than typer/rich/structlog:
the agent runs on every machine of the fleet, and those libraries would add
about 7 MB to its resident memory for nothing it needs (SPEC §10.2: idle RSS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kanade.logsetup import configure_stdlib_logging

if TYPE_CHECKING:
    from kanade.bus.credentials import BusCredentials

_EPILOG_RUN = """example:
  kanade-agent run --pc-id web-1 --group web \\
      --nats-url nats://10.0.0.5:4222 --data-dir /var/lib/kanade/agent
"""
_EPILOG_ENROLL = """example (the line `kanade agent enroll-token` printed):
  kanade-agent enroll https://kanade.example:8080 TOKEN --pc-id web-1
then start the agent as usual: kanade-agent run
"""
_EPILOG_SWARM = """example:
  kanade-agent swarm --agents 1000 --prefix sim- --exec stub
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help laid out for the terminal, measured with ``os``: argparse would measure it with
    shutil, which loads bz2 and lzma into every agent for good (SPEC §10.2: idle RSS)."""

    def __init__(self, prog: str) -> None:
        try:
            columns = os.get_terminal_size(sys.stdout.fileno()).columns
        except (OSError, ValueError):
            columns = 80
        super().__init__(prog, width=max(40, columns - 2))


def _parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        formatter_class=_Formatter,
        prog="kanade-agent",
        description="kanade agent: runs scripts sent through NATS on this machine.",
    )
    sub = root.add_subparsers(dest="verb", required=True, metavar="{run,enroll,swarm}")

    run = sub.add_parser(
        "run", help="run one agent in the foreground until SIGTERM / Ctrl-C",
        epilog=_EPILOG_RUN, formatter_class=_Formatter,
    )
    run.add_argument("--pc-id", help="this machine's id (default: the short hostname)")
    run.add_argument("--group", "-g", action="append", dest="groups", metavar="GROUP",
                     help="group membership (repeatable)")
    run.add_argument("--nats-url", dest="nats_urls", metavar="URL",
                     help="broker URL(s), comma separated (env: KANADE_NATS_URL)")
    run.add_argument("--data-dir", type=Path, help="ledger, outbox and spool directory")
    run.add_argument("--trust-dir", type=Path,
                     help="broker credential and CA (default: <data-dir>/trust; "
                          "env: KANADE_AGENT_TRUST_DIR)")
    run.add_argument("--config", type=Path,
                     help="config file, YAML (env: KANADE_AGENT_CONFIG)")
    run.add_argument("--keyring", type=Path,
                     help="pinned command-signing keys (env: KANADE_AGENT_KEYRING; "
                          "default: <data-dir>/trust/keyring.json)")
    run.add_argument("--heartbeat-interval", type=float, help="seconds between heartbeats")
    run.add_argument("--max-local-concurrent", type=int, help="scripts run at once")
    run.add_argument("--startup-delay-max", type=float,
                     help="random delay (s) before the first connect")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--containment", choices=["auto", "tracking"],
                     help="how a script's process tree is held: auto = a cgroup v2 per "
                          "script where allowed (Linux), else process group + tracked "
                          "descendants; tracking = always the latter")

    enroll = sub.add_parser(
        "enroll", help="obtain this machine's broker identity with a one-time token",
        epilog=_EPILOG_ENROLL, formatter_class=_Formatter,
    )
    enroll.add_argument("url", help="the backend URL, http(s)://HOST:PORT")
    enroll.add_argument("token", help="the one-time enrolment token ('-' reads it from stdin)")
    enroll.add_argument("--pc-id", help="this machine's id (default: config, else hostname)")
    enroll.add_argument("--data-dir", type=Path, help="the agent's data directory")
    enroll.add_argument("--config", type=Path,
                        help="config file to write (env: KANADE_AGENT_CONFIG)")
    enroll.add_argument("--backend-ca", type=Path, metavar="FILE",
                        help="CA certificate of an https backend (default: the system's)")

    swarm = sub.add_parser(
        "swarm", help="run N simulated agents in one process (scale tests)",
        epilog=_EPILOG_SWARM, formatter_class=_Formatter,
    )
    swarm.add_argument("--agents", "-n", type=int, default=100, help="how many identities")
    swarm.add_argument("--prefix", default="sim-", help="pc_id prefix")
    swarm.add_argument("--nats-url", default=None, help="broker URL(s), comma separated")
    swarm.add_argument("--data-dir", type=Path, default=Path(".kanade/swarm"),
                       help="one sub-folder per identity")
    swarm.add_argument("--exec", dest="exec_mode", choices=["stub", "real"], default="stub",
                       help="stub: instant success; real: run the script")
    swarm.add_argument("--groups", type=int, default=0,
                       help="spread identities over this many groups")
    swarm.add_argument("--group", "-g", action="append", dest="extra_groups", metavar="GROUP",
                       help="a group for every identity (repeatable)")
    swarm.add_argument("--creds", type=Path, default=None,
                       help="the swarm's NATS credential (env: KANADE_NATS_CREDS)")
    swarm.add_argument("--ca", type=Path, default=None,
                       help="the broker's CA certificate (env: KANADE_NATS_CA)")
    swarm.add_argument("--heartbeat-interval", type=float, default=30.0)
    swarm.add_argument("--keyring", type=Path, default=None,
                       help="pinned command-signing keys, shared by every identity "
                            "(env: KANADE_AGENT_KEYRING; default: <data-dir>/trust/keyring.json)")
    swarm.add_argument("--fsync", action="store_true", help="fsync ledger/outbox writes")
    swarm.add_argument("--log-level", default="warning",
                       choices=["debug", "info", "warning", "error"])
    return root


def _install_stop(stop: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop)


def _run(args: argparse.Namespace) -> int:
    from kanade.agent.leanimport import import_lean

    import_lean()  # before anything imports nats-py or pydantic: idle RSS (SPEC §10.2)

    from kanade.agent.runtime import Agent
    from kanade.agent.settings import load_settings

    overrides = {
        "pc_id": args.pc_id,
        "groups": args.groups,
        "nats_urls": args.nats_urls or os.environ.get("KANADE_NATS_URL"),
        "data_dir": args.data_dir,
        "trust_dir": args.trust_dir or os.environ.get("KANADE_AGENT_TRUST_DIR"),
        "heartbeat_interval": args.heartbeat_interval,
        "max_local_concurrent": args.max_local_concurrent,
        "startup_delay_max": args.startup_delay_max,
        "log_level": args.log_level,
        "keyring": args.keyring,
        "containment": args.containment,
    }
    try:
        settings = load_settings(args.config, overrides)
    except (ValueError, TypeError, OSError) as exc:
        print(f"kanade-agent: {exc}", file=sys.stderr)
        return 2
    configure_stdlib_logging(settings.log_level)

    async def serve() -> None:
        agent = Agent(settings)
        _install_stop(agent.stop)
        await agent.run()

    asyncio.run(serve())
    return 0


def _swarm_credentials(creds: Path | None, ca: Path | None) -> BusCredentials:
    """The swarm's one broad identity: flags, else the environment; never anonymous."""
    from kanade.bus.credentials import BusCredentials, CredentialsError

    if creds is not None or ca is not None:
        if creds is None or ca is None:
            raise CredentialsError("--creds and --ca go together")
        found: BusCredentials | None = BusCredentials(creds, ca)
    else:
        found = BusCredentials.from_env()
    if found is None:
        raise CredentialsError(
            "a credential is required (--creds FILE --ca FILE, or $KANADE_NATS_CREDS and "
            "$KANADE_NATS_CA): the broker accepts no anonymous connection"
        )
    found.check()
    return found


def _swarm(args: argparse.Namespace) -> int:
    from kanade.agent.settings import env_keyring
    from kanade.agent.swarm import Swarm, SwarmSpec
    from kanade.bus.credentials import CredentialsError

    if args.agents < 1:
        print("kanade-agent swarm: --agents must be >= 1", file=sys.stderr)
        return 2
    try:
        credentials = _swarm_credentials(args.creds, args.ca)
    except CredentialsError as exc:
        print(f"kanade-agent swarm: {exc}", file=sys.stderr)
        return 2
    configure_stdlib_logging(args.log_level)
    urls = args.nats_url or os.environ.get("KANADE_NATS_URL") or "nats://127.0.0.1:4222"
    spec = SwarmSpec(
        agents=args.agents, prefix=args.prefix,
        nats_urls=[u for u in urls.split(",") if u], data_dir=args.data_dir,
        credentials=credentials,
        exec_mode=args.exec_mode, groups=args.groups, extra_groups=args.extra_groups or [],
        heartbeat_interval=args.heartbeat_interval, durable=args.fsync,
        keyring=args.keyring or env_keyring(),
    )

    async def go() -> None:
        sw = Swarm(spec)
        main = asyncio.current_task()

        def stop() -> None:
            # Still connecting (e.g. a broker that refuses it): nothing to drain, stop now.
            if not sw.agents and main is not None:
                main.cancel()
            sw.stop()

        _install_stop(stop)
        with contextlib.suppress(asyncio.CancelledError):
            await sw.run(on_ready=lambda s: print(
                f"swarm ready: {len(s.agents)} identities in {s.started_in:.1f}s", flush=True))

    asyncio.run(go())
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from kanade.agent.enrol import EnrolError, enrol, read_token

    try:
        done = enrol(
            args.url, read_token(args.token), pc_id=args.pc_id, data_dir=args.data_dir,
            config=args.config, backend_ca=args.backend_ca,
        )
    except EnrolError as exc:
        print(f"kanade-agent enroll: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kanade-agent enroll: cannot write {exc.filename}: {exc.strerror}",
              file=sys.stderr)
        return 1
    print(f"enrolled as {done.pc_id}: credentials in {done.trust_dir}, "
          f"brokers {', '.join(done.nats_urls)} in {done.config}")
    print("start the agent with: kanade-agent run"
          + (f" --config {done.config}" if args.config else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    verbs = {"run": _run, "enroll": _enroll, "swarm": _swarm}
    return verbs[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())
