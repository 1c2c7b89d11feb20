"""KV-backed documents the backend owns: the job and schedule catalogs, freeze."""
