"""A database password on the command line is noticed (``kanade-backend run`` warns)."""

from __future__ import annotations

from kanade.backend.store.database import password_in_argv

URL = "postgresql+psycopg://kanade:s3cret@127.0.0.1:5432/kanade"


def test_a_password_given_on_the_command_line_is_noticed() -> None:
    assert password_in_argv(URL, ["kanade-backend", "run", "--db", URL])
    assert password_in_argv(URL, ["kanade-backend", "run", f"--db={URL}"])


def test_the_environment_or_no_password_is_fine() -> None:
    assert not password_in_argv(URL, ["kanade-backend", "run"])  # from $KANADE_DB
    assert not password_in_argv("postgresql+psycopg://kanade@db/kanade", ["--db", "x"])
    assert not password_in_argv("/var/lib/kanade/kanade.db", ["--db", "/var/lib/kanade/kanade.db"])
    assert not password_in_argv("postgresql://::bad", ["--db", "postgresql://::bad"])
