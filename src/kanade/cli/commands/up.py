"""``kanade up``: a whole kanade on one machine; the supervisor itself is
:mod:`kanade.cli.supervisor`, imported only when the verb runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kanade.cli.common import guard


def up(
    agents_n: Annotated[int, typer.Option("--agents", help="How many local agents.")] = 3,
    http_port: Annotated[int, typer.Option("--http-port")] = 8080,
    nats_port: Annotated[int, typer.Option("--nats-port")] = 4222,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="State lives here.")] = Path(
        ".kanade"
    ),
    examples: Annotated[
        Path | None, typer.Option(
            "--examples",
            help="A folder of job manifests to load (default: the example jobs shipped "
            "with kanade: hello, disk-usage, uptime-check).",
        )
    ] = None,
    auth: Annotated[
        str, typer.Option("--auth", help="disabled (dev) or jwt (creates an admin user).")
    ] = "disabled",
    cluster: Annotated[
        bool,
        typer.Option("--cluster", help="3 brokers in a cluster, PostgreSQL and 2 backends "
                     "(ports: --nats-port +0..2, --http-port +0..1)."),
    ] = False,
) -> None:
    """Start a broker, the backend and N local agents; Ctrl-C stops them all.

    Example: kanade up --agents 3       (the whole scale-out topology: kanade up --cluster)
    """
    if cluster:
        from kanade.cli.cluster_up import run_up_cluster

        guard(
            lambda: run_up_cluster(
                agents_n=agents_n, http_port=http_port, nats_port=nats_port,
                data_dir=data_dir, auth=auth, examples=examples,
            )
        )  # fmt: skip
        return
    from kanade.cli.supervisor import run_up

    guard(
        lambda: run_up(
            agents_n=agents_n,
            http_port=http_port,
            nats_port=nats_port,
            data_dir=data_dir,
            auth=auth,
            examples=examples,
        )
    )
