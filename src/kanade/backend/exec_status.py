"""Temporary alias: the status machine lives in :mod:`kanade.core.execstatus`."""

from kanade.core.execstatus import TRANSITIONS, ExecStatus, can_transition, progressed_status

__all__ = ["TRANSITIONS", "ExecStatus", "can_transition", "progressed_status"]
