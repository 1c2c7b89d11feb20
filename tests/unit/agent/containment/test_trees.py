"""Process trees with real processes (kanade.agent.containment, kanade.agent.process): a kill
ends what left the process group (``setsid``, a double fork), a dead agent's leftovers are
found again — by cgroup, or by record and environment — and never a recycled pid."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from kanade.agent.containment import RUN_ID_ENV, Containment, ProcessTree
from kanade.agent.containment.cgroup import CgroupTree, end_group, populated, probe_cgroups
from kanade.agent.containment.tracking import TrackedTree, end_leftovers
from kanade.agent.process import run_process
from kanade.deathsig import death_signal_argv

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process trees")

# A daemon that double-forked into its own session: nobody's descendant once its parent
# (setsid -f) has exited, and out of the script's process group.
DAEMON = (
    "setsid -f sh -c 'trap \"\" TERM; echo $$ > \"$D/daemon.pid\"; "
    "while :; do sleep 1; done'; "
    'while [ ! -s "$D/daemon.pid" ]; do sleep 0.05; done; sleep 300'
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def cgroups_usable() -> None:
    probe = probe_cgroups()
    if probe.base is None:
        pytest.skip(f"cgroup v2 not usable here: {probe.reason}")


async def _kill_daemon_script(tmp_path: Path, tree: ProcessTree) -> tuple[int, int]:
    kill = asyncio.Event()
    pidfile = tmp_path / "daemon.pid"

    async def killer() -> None:
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)  # a tracking snapshot or two
        kill.set()

    task = asyncio.ensure_future(killer())
    outcome = await run_process(
        ["/bin/sh", "-c", DAEMON], timeout_s=30, cap_bytes=1024, spool_dir=tmp_path,
        spool_name="r1", kill=kill, env={"D": str(tmp_path)}, tree=tree,
    )  # fmt: skip
    await task
    return outcome.exit_code, int(pidfile.read_text())


async def test_tracking_ends_a_double_forked_daemon(tmp_path: Path) -> None:
    tree = TrackedTree("run-1", tmp_path / "run-1.json")
    code, daemon = await _kill_daemon_script(tmp_path, tree)
    assert code == -1 and gone(daemon)
    assert not (tmp_path / "run-1.json").exists()  # the run is over: no record left


async def test_a_cgroup_holds_what_left_the_process_group(tmp_path: Path) -> None:
    cgroups_usable()
    containment = Containment(tmp_path, "unit-1")
    tree = containment.tree("run-2")
    assert isinstance(tree, CgroupTree)
    code, daemon = await _kill_daemon_script(tmp_path, tree)
    assert code == -1 and gone(daemon) and tree.contained
    assert not tree.group.exists()  # emptied and removed
    containment.close()
    assert containment.root is not None and not containment.root.exists()


async def test_a_script_that_cannot_be_put_in_its_cgroup_is_tracked_instead(
    tmp_path: Path,
) -> None:
    (tmp_path / "not-a-cgroup").write_text("")  # mkdir of its group fails
    tree = CgroupTree("run-3", tmp_path / "not-a-cgroup" / "run-3", tmp_path / "run-3.json")
    code, daemon = await _kill_daemon_script(tmp_path, tree)
    assert code == -1 and not tree.contained and gone(daemon)


def _sleeper(run_id: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    if run_id is not None:
        env[RUN_ID_ENV] = run_id
    return subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)


def test_a_dead_runs_leftovers_are_found_by_record_and_environment(tmp_path: Path) -> None:
    recorded, marked, stranger = _sleeper(None), _sleeper("run-4"), _sleeper(None)
    try:
        created = psutil.Process(recorded.pid).create_time()
        # The stranger's pid is recorded with another creation time: a recycled pid.
        record = tmp_path / "run-4.json"
        record.write_text(
            f'{{"pids": [[{recorded.pid}, {created}], [{stranger.pid}, {created - 100}]]}}'
        )
        assert end_leftovers("run-4", record) == 2
        for proc in (recorded, marked):
            proc.wait(timeout=5)
        assert stranger.poll() is None and not record.exists()
    finally:
        for proc in (recorded, marked, stranger):
            proc.kill()
            proc.wait(timeout=5)


def test_a_dead_runs_cgroup_is_ended_and_removed(tmp_path: Path) -> None:
    cgroups_usable()
    containment = Containment(tmp_path, "unit-2")
    assert containment.root is not None
    group = containment.root / "run-5"
    group.mkdir(parents=True)
    proc = _sleeper(None)
    try:
        (group / "cgroup.procs").write_text(str(proc.pid))
        assert populated(group)
        assert containment.end_leftovers("run-5") == 1
        proc.wait(timeout=5)
        assert not group.exists() and end_group(group) == 0
    finally:
        proc.kill()
        proc.wait(timeout=5)
        containment.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
@pytest.mark.parametrize("asked_by", ["setpriv", "preexec_fn"])
def test_a_scripts_first_process_dies_with_the_agent(tmp_path: Path, asked_by: str) -> None:
    """A stand-in agent runs a script, then is killed with SIGKILL: the script goes too —
    whether the script asked for it through setpriv or, where there is none, a preexec_fn."""
    if asked_by == "setpriv" and death_signal_argv(signal.SIGKILL) is None:
        pytest.skip("no setpriv with --pdeathsig here")
    agent = (
        "import asyncio, pathlib, sys\n"
        "import kanade.deathsig\n"
        + ("kanade.deathsig._setpriv = lambda: None\n" if asked_by == "preexec_fn" else "")
        + "from kanade.agent.process import run_process\n"
        "d = pathlib.Path(sys.argv[1])\n"
        "asyncio.run(run_process(['/bin/sh', '-c', 'echo $$ > \"$D/sh.pid\"; exec sleep 300'],"
        " timeout_s=300, cap_bytes=64, spool_dir=d, spool_name='r', kill=asyncio.Event(),"
        " env={'D': str(d)}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", agent, str(tmp_path)])
    pidfile = tmp_path / "sh.pid"
    try:
        give_up = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < give_up and proc.poll() is None, "script never started"
            time.sleep(0.02)
        script = int(pidfile.read_text())
        proc.kill()
        proc.wait(timeout=5)
        give_up = time.monotonic() + 5
        while not gone(script) and time.monotonic() < give_up:
            time.sleep(0.02)
        assert gone(script)
    finally:
        proc.kill()
        proc.wait(timeout=5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_a_script_starts_without_a_preexec_fn_where_setpriv_asks_for_the_signal() -> None:
    """A preexec_fn makes subprocess fork the whole agent instead of vfork-ing it (≈ 8 ms
    of CPU per script start in an agent-sized process): with setpriv it is not used."""
    prefix = death_signal_argv(signal.SIGKILL)
    if prefix is None:
        pytest.skip("no setpriv with --pdeathsig here")
    tree = ProcessTree("r")
    assert "preexec_fn" not in tree.spawn_options()
    assert tree.command_line(["/bin/sh", "-c", "true"]) == [*prefix, "/bin/sh", "-c", "true"]
    assert prefix[1:] == ["--pdeathsig", "KILL", "--"]


async def test_output_that_cannot_be_spooled_is_dropped_without_blocking(tmp_path: Path) -> None:
    """The disk is full (here: the spool directory is missing): the script is read to its
    end — not left blocked on a pipe nobody reads — and the result says what was lost."""
    outcome = await run_process(
        ["/bin/sh", "-c", "head -c 1000000 /dev/zero; echo done >&2"], timeout_s=20,
        cap_bytes=100, spool_dir=tmp_path / "missing", spool_name="r", kill=asyncio.Event(),
    )  # fmt: skip
    assert (outcome.exit_code, outcome.timed_out) == (0, False)
    assert outcome.stdout.head == b"\0" * 100 and outcome.stdout.total == 1_000_000
    assert outcome.stdout.spool is None and outcome.stderr.head == b"done\n"
    lost = "stdout beyond the first 100 of 1000000 bytes was lost"
    assert outcome.note is not None and lost in outcome.note
