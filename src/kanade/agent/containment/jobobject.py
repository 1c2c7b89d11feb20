"""Windows: each script in a job object — every process it starts joins the job, a kill is
``TerminateJobObject``, and the job is marked kill-on-close, so the scripts of an agent that
dies (its handles closed by the system) end with it.

A script that exits normally may leave processes on purpose: the kill-on-close mark is
lifted before the agent lets go of the job. Only processes started before the script was
assigned (a few microseconds) could escape; ``taskkill /T`` still follows those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

from kanade.agent.containment.tree import ProcessTree

log = logging.getLogger("kanade.agent")

_JOB_OBJECT_BASIC_ACCOUNTING_INFORMATION = 1
_JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
_JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
_PROCESS_SET_QUOTA = 0x0100
_PROCESS_TERMINATE = 0x0001


def _api() -> Any:
    """kernel32 with the prototypes used here (Windows only; loaded with the first script)."""
    import ctypes
    from ctypes import wintypes

    class IoCounters(ctypes.Structure):
        _fields_ = [(name, ctypes.c_ulonglong) for name in (
            "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
            "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]  # fmt: skip

    class BasicLimit(ctypes.Structure):
        _fields_ = [
            ("PerProcessUserTimeLimit", ctypes.c_int64),
            ("PerJobUserTimeLimit", ctypes.c_int64),
            ("LimitFlags", wintypes.DWORD),
            ("MinimumWorkingSetSize", ctypes.c_size_t),
            ("MaximumWorkingSetSize", ctypes.c_size_t),
            ("ActiveProcessLimit", wintypes.DWORD),
            ("Affinity", ctypes.c_size_t),
            ("PriorityClass", wintypes.DWORD),
            ("SchedulingClass", wintypes.DWORD),
        ]

    class ExtendedLimit(ctypes.Structure):
        _fields_ = [
            ("BasicLimitInformation", BasicLimit),
            ("IoInfo", IoCounters),
            ("ProcessMemoryLimit", ctypes.c_size_t),
            ("JobMemoryLimit", ctypes.c_size_t),
            ("PeakProcessMemoryUsed", ctypes.c_size_t),
            ("PeakJobMemoryUsed", ctypes.c_size_t),
        ]

    class BasicAccounting(ctypes.Structure):
        _fields_ = [
            ("TotalUserTime", ctypes.c_int64),
            ("TotalKernelTime", ctypes.c_int64),
            ("ThisPeriodTotalUserTime", ctypes.c_int64),
            ("ThisPeriodTotalKernelTime", ctypes.c_int64),
            ("TotalPageFaultCount", wintypes.DWORD),
            ("TotalProcesses", wintypes.DWORD),
            ("ActiveProcesses", wintypes.DWORD),
            ("TotalTerminatedProcesses", wintypes.DWORD),
        ]

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.CreateJobObjectW.restype = wintypes.HANDLE
    kernel32.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
    handle, info, size = wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD
    kernel32.SetInformationJobObject.argtypes = [handle, ctypes.c_int, info, size]
    kernel32.QueryInformationJobObject.argtypes = [handle, ctypes.c_int, info, size, info]
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    kernel32.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
    kernel32.TerminateJobObject.argtypes = [wintypes.HANDLE, wintypes.UINT]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    kernel32.ExtendedLimit = ExtendedLimit
    kernel32.BasicAccounting = BasicAccounting
    kernel32.ctypes = ctypes
    return kernel32


class JobTree(ProcessTree):
    kind = "job object"

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self._job: int | None = None

    def _limit(self, flags: int) -> bool:
        k = _api()
        info = k.ExtendedLimit()
        info.BasicLimitInformation.LimitFlags = flags
        size = k.ctypes.sizeof(info)
        ok = k.SetInformationJobObject(
            self._job, _JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, k.ctypes.byref(info), size
        )
        return bool(ok)

    async def started(self, proc: asyncio.subprocess.Process) -> None:
        await super().started(proc)
        if sys.platform != "win32":
            return
        k = _api()
        job = k.CreateJobObjectW(None, None)
        if not job:
            log.warning("could not create a job object for %s", self.run_id)
            return
        self._job = int(job)
        self._limit(_JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE)
        handle = k.OpenProcess(_PROCESS_SET_QUOTA | _PROCESS_TERMINATE, False, proc.pid)
        try:
            if not handle or not k.AssignProcessToJobObject(self._job, handle):
                log.warning("could not put %s into its job object", self.run_id)
                self._release()
        finally:
            if handle:
                k.CloseHandle(handle)

    def kill(self) -> None:
        if self._job is not None:
            _api().TerminateJobObject(self._job, 1)
        super().kill()  # taskkill /T: anything started before the assignment

    def empty(self) -> bool:
        if self._job is None:
            return super().empty()
        k = _api()
        info = k.BasicAccounting()
        ok = k.QueryInformationJobObject(
            self._job, _JOB_OBJECT_BASIC_ACCOUNTING_INFORMATION, k.ctypes.byref(info),
            k.ctypes.sizeof(info), None,
        )  # fmt: skip
        return bool(ok) and int(info.ActiveProcesses) == 0

    def _release(self) -> None:
        if self._job is not None:
            with contextlib.suppress(Exception):
                self._limit(0)  # what the script left on purpose outlives the handle
                _api().CloseHandle(self._job)
            self._job = None

    def close(self) -> None:
        self._release()
