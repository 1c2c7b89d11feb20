"""Trust material for kanade (SPEC §8): identities, certificates and signing keys."""
