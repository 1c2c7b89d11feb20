"""``kanade bench …``: the SPEC §10 benchmarks, each printing JSON lines."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=True,
    help="Benchmarks on loopback (real broker, backend, agents); JSON lines on stdout.",
)


@app.command("fanout")
def fanout(
    agents: Annotated[int, typer.Option("--agents", "-n")] = 1000,
    exec_mode: Annotated[str, typer.Option("--exec", help="stub or real")] = "stub",
    runs: Annotated[int, typer.Option("--runs")] = 5,
    cluster: Annotated[bool, typer.Option("--cluster", help="on kanade up --cluster")] = False,
) -> None:
    """Exec a trivial job to N simulated agents until all N results are DB rows.

    Example: kanade bench fanout --agents 10000 --exec stub
    """
    from kanade.bench import fanout as mod

    if exec_mode not in ("stub", "real"):
        raise typer.BadParameter("--exec must be stub or real")
    mod.run(agents, exec_mode, runs, cluster)


@app.command("run-latency")
def run_latency(
    agents: Annotated[list[int] | None, typer.Option("--agents", "-n")] = None,
    runs: Annotated[int, typer.Option("--runs")] = 10,
    starts: Annotated[int, typer.Option("--starts", help="kanade up starts to time")] = 3,
    cluster: Annotated[bool, typer.Option("--cluster", help="on kanade up --cluster")] = False,
) -> None:
    """`kanade run --all` round trip to N real agents (CLI and API), and `kanade up` start-up.

    Example: kanade bench run-latency --agents 1 --agents 10 --agents 25 --agents 50
    """
    from kanade.bench import latency

    latency.run(agents or [3], runs, starts, cluster)


@app.command("ingest")
def ingest(
    results: Annotated[int, typer.Option("--results")] = 20000,
    runs: Annotated[int, typer.Option("--runs")] = 3,
    store: Annotated[
        str,
        typer.Option("--store", help="sqlite, or postgresql (a throwaway local server)"),
    ] = "sqlite",
    cluster: Annotated[
        bool,
        typer.Option("--cluster", help="3 brokers (R3) and 2 backend replicas on PostgreSQL"),
    ] = False,
) -> None:
    """Sustained results/s projected into SQLite or PostgreSQL from a backlog in the stream.

    Example: kanade bench ingest --results 20000 --store postgresql
    """
    from kanade.bench import ingest as mod

    mod.run(results, runs, store, cluster)


@app.command("footprint")
def footprint(
    seconds: Annotated[float, typer.Option("--seconds")] = 60.0,
    swarm: Annotated[int, typer.Option("--swarm", help="simulated agents for the backend")] = 1000,
) -> None:
    """Idle RSS/CPU of one real agent, and of the backend with a swarm connected."""
    from kanade.bench import footprint as mod

    mod.run(seconds, swarm)


@app.command("throughput")
def throughput(
    agents: Annotated[int, typer.Option("--agents", "-n")] = 25,
    jobs: Annotated[int, typer.Option("--jobs")] = 50,
) -> None:
    """50 jobs back to back and 50 at once to N real agents: jobs/s and results/s."""
    from kanade.bench import throughput as mod

    mod.run(agents, jobs)


@app.command("scheduler")
def scheduler(
    schedules: Annotated[int, typer.Option("--schedules")] = 1000,
    runs: Annotated[int, typer.Option("--runs", help="consecutive minutes to measure")] = 1,
    cluster: Annotated[
        bool, typer.Option("--cluster", help="3 brokers, PostgreSQL, 2 backend replicas")
    ] = False,
) -> None:
    """Fire lateness p50/p99: N calendar schedules due in the same minute (real backend)."""
    from kanade.bench import scheduler_lateness

    scheduler_lateness.main(["--schedules", str(schedules), "--runs", str(runs)]
                            + (["--cluster"] if cluster else []))


@app.command("tick")
def tick(
    agents: Annotated[int, typer.Option("--agents")] = 10_000,
    schedules: Annotated[int, typer.Option("--schedules")] = 100,
    runs: Annotated[int, typer.Option("--runs")] = 7,
) -> None:
    """Decision time of one reconcile tick: N agents x M per_pc schedules (core path)."""
    from kanade.bench import scheduler_tick

    scheduler_tick.main(["--agents", str(agents), "--schedules", str(schedules),
                         "--runs", str(runs)])


@app.command("retention")
def retention(
    rows: Annotated[int, typer.Option("--rows", help="old results to prune")] = 1_000_000,
    results: Annotated[int, typer.Option("--results", help="fresh results to ingest")] = 100_000,
    runs: Annotated[int, typer.Option("--runs")] = 3,
) -> None:
    """Ingest rate while retention prunes N old results, against retention off.

    Example: kanade bench retention --rows 1000000 --results 100000
    """
    from kanade.bench import retention as mod

    mod.run(rows, results, runs)
