"""Field paths in error messages (kanade.core.validation.format_path): one line, unambiguous."""

from __future__ import annotations

from kanade.core.validation import DOCUMENT, format_path


def test_words_join_with_dots_and_indexes_with_brackets() -> None:
    assert format_path(("rollout", "waves", 0, "delay")) == "rollout.waves[0].delay"
    assert format_path(()) == DOCUMENT


def test_a_key_that_is_not_a_plain_word_is_quoted() -> None:
    assert format_path(("env", "A B")) == 'env["A B"]'


def test_a_trailing_newline_is_quoted_never_printed() -> None:
    # Found by hypothesis: ``$`` also matches before a final newline, which let ``"0\n"``
    # through as a bare word and split one error over two lines.
    path = format_path(("env", "0\n"))
    assert "\n" not in path
    assert path == 'env["0\\n"]'
