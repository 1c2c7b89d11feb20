"""kanade.cli: the ``kanade`` operator CLI — one module per noun under
:mod:`kanade.cli.commands`, registered by :mod:`kanade.cli.main`."""
