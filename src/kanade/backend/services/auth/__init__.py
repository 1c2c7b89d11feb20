"""Authentication (SPEC §4.10): who is calling, passwords, tokens."""
