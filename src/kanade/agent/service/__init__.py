"""Running the agent as a system service (SPEC §3.9): ``kanade-agent install|uninstall|status``.

One generator per service manager (:mod:`.systemd`, :mod:`.launchd`, :mod:`.windows`), each a
pure function of a :class:`~kanade.agent.service.spec.ServiceSpec` whose every line says why
it is there; :mod:`.installer` writes the files and drives the manager; :mod:`.statusfile`
is what a running agent leaves for ``status``. None of it is imported by ``kanade-agent run``
except the status file writer. Design: docs/deploy.md.
"""
