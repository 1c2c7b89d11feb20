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
_EPILOG_INSTALL = """examples (the token is read from stdin or a file, never the command line):
  kanade-agent install --enroll https://kanade.example:8080 --group web < token.txt
  kanade-agent install --config /etc/kanade/agent.yaml --no-start
  kanade-agent install --root /tmp/stage --manager launchd      (dry run: files only)
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
    from kanade import __version__

    root.add_argument("--version", action="version", version=f"kanade-agent {__version__}")
    sub = root.add_subparsers(
        dest="verb", required=True, metavar="{run,enroll,install,uninstall,status,swarm}"
    )

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
    run.add_argument("--reconcile-poll", type=float, metavar="SECONDS",
                     help="how often per_pc/per_target schedules poll (default 60, 1..3600)")
    run.add_argument("--startup-delay-max", type=float,
                     help="random delay (s) before the first connect")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--live-output-bytes-per-s", type=int, metavar="N",
                     help="cap on live output published while watched (0 = none)")
    run.add_argument("--live-output-msgs-per-s", type=float, metavar="N",
                     help="cap on live-output messages per second")
    run.add_argument("--update-check", action="store_true", help=argparse.SUPPRESS)
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

    def service_paths(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="the service's config file (default: the OS's, "
                       "/etc/kanade/agent.yaml on Linux; env: KANADE_AGENT_CONFIG)")
        p.add_argument("--data-dir", help="the agent's data directory (default: the OS's, "
                       "/var/lib/kanade/agent on Linux)")
        p.add_argument("--manager", choices=["systemd", "launchd", "windows"],
                       help="service manager (default: this system's)")
        p.add_argument("--root", type=Path, metavar="DIR",
                       help="act on files under DIR as if it were / and run no system "
                            "command (prints them): a dry run or a staging tree")

    install = sub.add_parser(
        "install", help="install and start the agent as a service (systemd, launchd, Windows)",
        epilog=_EPILOG_INSTALL, formatter_class=_Formatter,
    )
    service_paths(install)
    install.add_argument("--pc-id", help="this machine's id (default: config, else hostname)")
    install.add_argument("--group", "-g", action="append", dest="groups", metavar="GROUP",
                         help="static group membership (repeatable)")
    install.add_argument("--nats-url", dest="nats_urls", metavar="URL",
                         help="broker URL(s), comma separated (enrolment sets them)")
    install.add_argument("--enroll", metavar="URL",
                         help="enrol with this backend first; the one-time token is read from "
                              "--token-file, else stdin")
    install.add_argument("--token-file", metavar="FILE",
                         help="file holding the enrolment token ('-': stdin)")
    install.add_argument("--backend-ca", type=Path, metavar="FILE",
                         help="CA certificate of an https backend (default: the system's)")
    install.add_argument("--no-start", action="store_true", help="install, do not start")

    uninstall = sub.add_parser(
        "uninstall", help="stop and remove the service (config and data kept unless --purge)",
        formatter_class=_Formatter,
    )
    service_paths(uninstall)
    uninstall.add_argument("--purge", action="store_true",
                           help="also remove the config and the data dir (credentials, "
                                "ledger, outbox, releases)")

    status = sub.add_parser(
        "status", help="service state, agent version, connection, last heartbeat",
        formatter_class=_Formatter,
    )
    service_paths(status)
    status.add_argument("--json", action="store_true", help="one JSON object")

    service = sub.add_parser(
        "service", help="(Windows) the agent under the Service Control Manager; "
        "what `install` registers", formatter_class=_Formatter,
    )
    service.add_argument("--config", type=Path, help="config file, YAML")

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

    from kanade.agent.settings import load_settings

    overrides = {
        "pc_id": args.pc_id,
        "groups": args.groups,
        "nats_urls": args.nats_urls or os.environ.get("KANADE_NATS_URL"),
        "data_dir": args.data_dir,
        "trust_dir": args.trust_dir or os.environ.get("KANADE_AGENT_TRUST_DIR"),
        "heartbeat_interval": args.heartbeat_interval,
        "max_local_concurrent": args.max_local_concurrent,
        "reconcile_poll": args.reconcile_poll,
        "startup_delay_max": args.startup_delay_max,
        "log_level": args.log_level,
        "keyring": args.keyring,
        "containment": args.containment,
        "live_output_bytes_per_s": args.live_output_bytes_per_s,
        "live_output_msgs_per_s": args.live_output_msgs_per_s,
    }
    try:
        settings = load_settings(args.config, overrides)
    except (ValueError, TypeError, OSError) as exc:
        print(f"kanade-agent: {exc}", file=sys.stderr)
        return 2
    configure_stdlib_logging(settings.log_level)
    if args.update_check:
        return _update_check(settings)
    from kanade import __version__
    from kanade.agent.update.state import handover

    other = handover(settings.data_dir, __version__)
    if other is not None:  # a self-update switched this machine to another version
        return restart_into(other)

    from kanade.agent.runtime import Agent

    agent: Agent | None = None

    async def serve() -> None:
        nonlocal agent
        agent = Agent(settings)
        _install_stop(agent.stop)
        await agent.run()

    asyncio.run(serve())
    if agent is not None and agent.restart_into is not None:
        return restart_into(agent.restart_into)
    return 0


def restart_into(artefact: Path) -> int:
    """Become the agent in ``artefact`` (SPEC §3.8), with this process's own arguments: on
    POSIX by ``exec`` (same pid: the service manager sees one process throughout); on
    Windows as a child this process waits for (``exec`` there is a new process)."""
    from kanade.agent.update.state import LAUNCHED_ENV

    argv = [sys.executable, str(artefact), *sys.argv[1:]]
    env = {**os.environ, LAUNCHED_ENV: artefact.parent.name}
    env.pop("KANADE_AGENT_ARTEFACT", None)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(sys.executable, argv, env)
    import subprocess

    return subprocess.call(argv, env=env)


def _update_check(settings: Any) -> int:
    """``run --update-check``: what a self-update runs on a new version before switching to
    it: everything imports, the credentials load, the broker accepts the connection."""
    from kanade import __version__
    from kanade.agent.runtime import Agent  # noqa: F401 - the import is the check
    from kanade.bus.connection import BusConnectError, connect
    from kanade.bus.credentials import BusCredentials, CredentialsError

    async def check() -> None:
        credentials = BusCredentials.for_agent(settings.trust_path, settings.pc_id)
        credentials.check()
        nc = await connect(settings.nats_urls, name=f"kanade-agent-check:{settings.pc_id}",
                           retry_forever=False, deadline=20.0, credentials=credentials)
        try:
            await nc.flush(timeout=10)
        finally:
            await nc.close()

    try:
        asyncio.run(check())
    except (BusConnectError, CredentialsError, OSError, TimeoutError) as exc:
        print(f"kanade-agent: update check failed: {exc}", file=sys.stderr)
        return 1
    print(f"update-check ok {__version__}", flush=True)
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


def _target(args: argparse.Namespace, verb: str) -> Any:
    from kanade.agent.service.installer import InstallError, target_for

    try:
        return target_for(args.manager, config=args.config, data_dir=args.data_dir,
                          root=args.root)
    except InstallError as exc:
        print(f"kanade-agent {verb}: {exc}", file=sys.stderr)
        return None


def _read_token(source: str | None) -> str:
    """The enrolment token from a file, or stdin (a prompt without echo on a terminal)."""
    if source not in (None, "-"):
        return Path(source).read_text().strip()
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("enrolment token: ").strip()
    return sys.stdin.readline().strip()


def _install(args: argparse.Namespace) -> int:
    from kanade.agent.service.installer import (
        Enrolment,
        InstallError,
        install,
        running_artefact,
    )

    target = _target(args, "install")
    if target is None:
        return 2
    enrolment = None
    try:
        if args.enroll:
            enrolment = Enrolment(args.enroll, _read_token(args.token_file), args.backend_ca)
        elif args.token_file:
            raise InstallError("--token-file goes with --enroll URL")
        install(
            target,
            settings={"pc_id": args.pc_id, "groups": args.groups, "nats_urls": args.nats_urls},
            enrolment=enrolment,
            start=not args.no_start,
            artefact=running_artefact(),
        )
    except InstallError as exc:
        print(f"kanade-agent install: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kanade-agent install: {exc.filename or ''}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    print("installed" + ("" if args.no_start else " and started")
          + "; check it with: kanade-agent status")
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    from kanade.agent.service.installer import InstallError, uninstall

    target = _target(args, "uninstall")
    if target is None:
        return 2
    try:
        uninstall(target, purge=args.purge)
    except (InstallError, OSError) as exc:
        print(f"kanade-agent uninstall: {exc}", file=sys.stderr)
        return 1
    print("uninstalled")
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    from kanade.agent.service.installer import status
    from kanade.core.instants import system_clock

    target = _target(args, "status")
    if target is None:
        return 2
    found = status(target, now=system_clock())
    if args.json:
        print(json.dumps({
            "service": found.service.detail, "installed": found.service.installed,
            "running": found.running, "connected": found.connected, "agent": found.report,
        }, sort_keys=True))
    else:
        print("\n".join(found.lines))
    return found.exit_code


def _service(args: argparse.Namespace) -> int:
    from kanade.agent.service.winhost import run_service

    def body(on_stop: Any) -> int:
        from kanade.agent.leanimport import import_lean

        import_lean()
        from kanade import __version__
        from kanade.agent.runtime import Agent
        from kanade.agent.settings import load_settings
        from kanade.agent.update.state import LAUNCHED_ENV, handover

        settings = load_settings(args.config, {})
        configure_stdlib_logging(settings.log_level)
        other = handover(settings.data_dir, __version__)
        if other is not None:
            # The current release runs as this service's child (Windows has no exec).
            import subprocess

            env = {**os.environ, LAUNCHED_ENV: other.parent.name}
            argv = [sys.executable, str(other), "run"]
            if args.config is not None:
                argv += ["--config", str(args.config)]
            child = subprocess.Popen(argv, env=env)
            on_stop(child.terminate)
            return child.wait()
        restart = False

        async def serve() -> None:
            nonlocal restart
            agent = Agent(settings)
            loop = asyncio.get_running_loop()
            on_stop(lambda: loop.call_soon_threadsafe(agent.stop))
            await agent.run()
            restart = agent.restart_into is not None

        asyncio.run(serve())
        # A self-update switched: a failure exit, so the service's recovery action starts
        # the service again, and its start hands over to the new release.
        return 75 if restart else 0

    return run_service(body)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    verbs = {"run": _run, "enroll": _enroll, "swarm": _swarm, "install": _install,
             "uninstall": _uninstall, "status": _status, "service": _service}
    return verbs[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())
