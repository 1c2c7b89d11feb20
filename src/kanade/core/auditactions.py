"""Audit action names, one per verb (``job.create``, ``exec.kill`` …): the one table.

Every audit record the backend writes names its action from :data:`ACTIONS`; a route
audited generically by the middleware gets its name from :data:`ROUTE_ACTIONS`; records
written before the names existed (``put_job``, ``exec``, ``user_add`` …) are renamed by
:func:`canonical` — by the projector for records still in the stream and by a migration
for rows already projected (docs/backend-auth-audit.md, "Audit action names").
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

ACTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        # executions
        "exec.create": "a job or an ad-hoc script was sent (or asked for approval)",
        "exec.kill": "an execution was killed",
        "exec.approve": "an execution awaiting approval was approved",
        "exec.reject": "an execution awaiting approval was rejected",
        "exec.approval_expire": "an approval request expired unanswered",
        # jobs
        "job.create": "a job was uploaded for the first time",
        "job.update": "a job was uploaded again (a new version, or the same one unchanged)",
        "job.put": "a job was uploaded (records older than job.create / job.update)",
        "job.delete": "a job was deleted (and revoked)",
        "job.revoke": "a job was revoked: agents skip it",
        "job.unrevoke": "a job's revocation was lifted",
        "job.approve_unattended": "a job version was approved for scheduled runs",
        "job.revoke_unattended": "a job version's unattended approval was withdrawn",
        "job.approval_lower": "an admin stored a job version that no longer requires approval",
        # script objects and agent releases
        "script.upload": "a script object was uploaded (`changed: false`: the same bytes again)",
        "release.publish": "an agent release was published",
        # schedules
        "schedule.create": "a schedule was created",
        "schedule.update": "a schedule was replaced",
        "schedule.delete": "a schedule was deleted",
        "schedule.enable": "a schedule was enabled",
        "schedule.disable": "a schedule was disabled (maybe with cascade)",
        "schedule.validate": "a schedule document was validated (nothing stored)",
        # fleet-wide controls
        "freeze.set": "scheduled fires were frozen",
        "freeze.clear": "the freeze was lifted",
        "config.set": "an agent config layer was changed",
        "config.unset": "settings were removed from an agent config layer",
        "group.set": "an agent's group membership changed",
        "keys.rotate": "the command-signing key was rotated",
        # rollouts
        "rollout.wave_send": "a rollout wave was sent",
        "rollout.halt": "a rollout halted: a wave failed too often",
        "rollout.complete": "a rollout's last wave settled",
        "rollout.resume": "a halted rollout was resumed",
        "rollout.abort": "a rollout was aborted",
        # agents and enrolment
        "agent.ping": "an agent was pinged",
        "agent.enroll": "an agent enrolled with a token",
        "agent.enroll_refuse": "an enrolment was refused",
        "agent.revoke": "an agent's identity was revoked",
        "enrolment.token_create": "an enrolment token was created",
        "enrolment.token_cancel": "an enrolment token was cancelled",
        # users
        "user.login": "a user logged in",
        "user.login_fail": "a login failed (wrong username or password)",
        "user.logout": "a user logged a session out",
        "user.logout_everywhere": "a user logged every one of their sessions out",
        "user.sessions_revoke": "an admin ended every session of a user",
        "user.create": "a user was created",
        "user.delete": "a user was deleted",
        "user.role_set": "a user's role was changed",
        "user.disable": "a user was disabled: their tokens stop working",
        "user.enable": "a disabled user was enabled again",
        "user.password_reset": "a user's password was reset by an admin",
        # notifications (docs/notifications.md)
        "webhook.create": "a webhook was added",
        "webhook.update": "a webhook was changed (enabled, disabled, events, URL …)",
        "webhook.delete": "a webhook was removed",
        "webhook.test": "a test notification was sent to a webhook",
        "webhook.retry": "a failed webhook delivery was retried",
    }
)
"""Every action name with what it records (``GET /api/audit/actions`` serves it)."""

ROUTE_ACTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ping_agent": "agent.ping",
        "validate_schedule": "schedule.validate",
    }
)
"""Route name → action, for mutating routes that write no record of their own (the
audit middleware's generic record). A route missing here keeps its route name."""

LEGACY: Final[Mapping[str, str]] = MappingProxyType(
    {
        "exec": "exec.create",
        "kill": "exec.kill",
        "approve": "exec.approve",
        "reject": "exec.reject",
        "approval_expired": "exec.approval_expire",
        # A generic record of POST /api/jobs: whether it created or replaced was not kept.
        "put_job": "job.put",
        "job_delete": "job.delete",
        "revoke": "job.revoke",
        "unrevoke": "job.unrevoke",
        "approve_unattended": "job.approve_unattended",
        "revoke_unattended": "job.revoke_unattended",
        "schedule_create": "schedule.create",
        "schedule_update": "schedule.update",
        "schedule_delete": "schedule.delete",
        "schedule_enable": "schedule.enable",
        "schedule_disable": "schedule.disable",
        "freeze_set": "freeze.set",
        "freeze_clear": "freeze.clear",
        "config_set": "config.set",
        "config_unset": "config.unset",
        "group_set": "group.set",
        "keys_rotate": "keys.rotate",
        "rollout_wave": "rollout.wave_send",
        "rollout_halted": "rollout.halt",
        "rollout_completed": "rollout.complete",
        "rollout_resume": "rollout.resume",
        "rollout_abort": "rollout.abort",
        "agent_enroll": "agent.enroll",
        "agent_enroll_refused": "agent.enroll_refuse",
        "agent_revoke": "agent.revoke",
        "enroll_token_create": "enrolment.token_create",
        "enroll_token_cancel": "enrolment.token_cancel",
        "login": "user.login",
        "user_add": "user.create",
        "user_delete": "user.delete",
        "login_failed": "user.login_fail",
        "logout": "user.logout",
        "logout_everywhere": "user.logout_everywhere",
        "sessions_revoke": "user.sessions_revoke",
        "job_approval_lowered": "job.approval_lower",
        "script_upload": "script.upload",
        "agent_release_publish": "release.publish",
        **ROUTE_ACTIONS,
    }
)
"""Names audit records had before :data:`ACTIONS` (and generic records' route names)."""


def canonical(action: str) -> str:
    """The current name of ``action`` (itself when it is current or unknown)."""
    return LEGACY.get(action, action)


def route_action(route_name: str) -> str:
    """The action of a generically audited route."""
    return ROUTE_ACTIONS.get(route_name, route_name)


def subject_token(action: str) -> str:
    """``action`` as subject tokens under ``kanade.audit.``: ``job.create`` → ``job.create``
    (two tokens); anything but letters, digits, ``_`` and ``-`` inside a part becomes ``_``."""
    parts = ["".join(c if c.isalnum() or c in "_-" else "_" for c in p) for p in action.split(".")]
    return ".".join(p or "_" for p in parts) or "unknown"
