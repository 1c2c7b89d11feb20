"""Authentication and authorisation of the HTTP API (SPEC §4.10).

* ``policy``: the one role table every route is checked against;
* ``passwords`` / ``tokens``: argon2 hashes and HS256 JWTs;
* ``users``: the ``users`` table;
* ``middleware``: the ASGI layer that authenticates, enforces the table and
  guarantees an audit record for every successful mutating request.
"""
