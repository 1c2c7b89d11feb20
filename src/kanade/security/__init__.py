"""Trust: who may talk on the broker, over what, and whose word an agent obeys (SPEC §8).

``authority`` (CA + NATS operator/accounts of one deployment), ``nats_jwt`` (credentials),
``permissions`` (the matrix), ``pki`` (TLS), ``signing_keys`` (command signing, backend side).
Modules here that use ``cryptography`` must never be imported by the agent (RSS budget).
"""
