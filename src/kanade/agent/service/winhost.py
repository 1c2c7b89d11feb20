"""``kanade-agent service``: the agent under the Windows Service Control Manager.

A Windows service must call ``StartServiceCtrlDispatcherW`` promptly and report its state;
this does it with ctypes (no pywin32 on the machine): the SCM calls :func:`_service_main`
on a thread of its own, which reports RUNNING, runs ``body(on_stop)`` there until it returns
(what it registered with ``on_stop`` is called on SERVICE_CONTROL_STOP/SHUTDOWN), and reports
STOPPED with its exit code. A non-zero code makes the SCM's recovery actions restart the
service (installed by :mod:`kanade.agent.service.windows`).

Not verified on Windows in this repository's CI (Linux only); the generator's commands are.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable
from typing import Any

from kanade.agent.service.spec import SERVICE_NAME

SERVICE_WIN32_OWN_PROCESS = 0x10
SERVICE_STOPPED = 1
SERVICE_START_PENDING = 2
SERVICE_STOP_PENDING = 3
SERVICE_RUNNING = 4
SERVICE_ACCEPT_STOP = 0x1
SERVICE_ACCEPT_SHUTDOWN = 0x4
SERVICE_CONTROL_STOP = 1
SERVICE_CONTROL_INTERROGATE = 4
SERVICE_CONTROL_SHUTDOWN = 5
NO_ERROR = 0
ERROR_SERVICE_SPECIFIC_ERROR = 1066
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063

# The service's work: called with ``on_stop``, through which it registers how to stop it
# (called at once if a stop came first); returns the exit code.
Body = Callable[[Callable[[Callable[[], None]], None]], int]


class _Status(ctypes.Structure):
    _fields_ = [
        ("dwServiceType", ctypes.c_uint32),
        ("dwCurrentState", ctypes.c_uint32),
        ("dwControlsAccepted", ctypes.c_uint32),
        ("dwWin32ExitCode", ctypes.c_uint32),
        ("dwServiceSpecificExitCode", ctypes.c_uint32),
        ("dwCheckPoint", ctypes.c_uint32),
        ("dwWaitHint", ctypes.c_uint32),
    ]


def run_service(body: Body) -> int:
    """Hand the process to the SCM; returns when the service has stopped."""
    if sys.platform != "win32":
        print("kanade-agent service: only under the Windows Service Control Manager "
              "(use `kanade-agent run` elsewhere)", file=sys.stderr)
        return 2
    advapi: Any = getattr(ctypes, "WinDLL")("advapi32", use_last_error=True)  # noqa: B009
    winfunctype: Any = getattr(ctypes, "WINFUNCTYPE")  # noqa: B009 (Windows-only names)
    handler_type = winfunctype(ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
                               ctypes.c_void_p, ctypes.c_void_p)
    main_type = winfunctype(None, ctypes.c_uint32, ctypes.c_void_p)
    advapi.RegisterServiceCtrlHandlerExW.restype = ctypes.c_void_p
    advapi.RegisterServiceCtrlHandlerExW.argtypes = [ctypes.c_wchar_p, handler_type,
                                                     ctypes.c_void_p]
    advapi.SetServiceStatus.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Status)]
    outcome = {"code": 0}
    stop_requested = threading.Event()
    stoppers: list[Callable[[], None]] = []
    handle: list[int] = []

    def report(state: int, code: int = 0, wait_hint: int = 0) -> None:
        status = _Status(
            SERVICE_WIN32_OWN_PROCESS, state,
            0 if state == SERVICE_START_PENDING else SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN,
            ERROR_SERVICE_SPECIFIC_ERROR if code else NO_ERROR, code, 0, wait_hint,
        )
        advapi.SetServiceStatus(handle[0], ctypes.byref(status))

    def on_control(control: int, _type: int, _data: Any, _ctx: Any) -> int:
        if control in (SERVICE_CONTROL_STOP, SERVICE_CONTROL_SHUTDOWN):
            report(SERVICE_STOP_PENDING, wait_hint=30_000)
            stop_requested.set()
            for stop in stoppers:
                stop()
        return NO_ERROR

    handler = handler_type(on_control)  # kept referenced until the service ends

    def service_main(_argc: int, _argv: Any) -> None:
        handle.append(advapi.RegisterServiceCtrlHandlerExW(SERVICE_NAME, handler, None))
        report(SERVICE_START_PENDING, wait_hint=10_000)
        report(SERVICE_RUNNING)

        def on_stop(stop: Callable[[], None]) -> None:
            stoppers.append(stop)
            if stop_requested.is_set():
                stop()

        try:
            outcome["code"] = body(on_stop) or 0
        except BaseException:  # reported as a failure: the SCM's recovery restarts it
            outcome["code"] = 1
            raise
        finally:
            report(SERVICE_STOPPED, code=outcome["code"])

    main = main_type(service_main)

    class _Entry(ctypes.Structure):
        _fields_ = [("lpServiceName", ctypes.c_wchar_p), ("lpServiceProc", main_type)]

    table = (_Entry * 2)(_Entry(SERVICE_NAME, main), _Entry(None, main_type()))
    if not advapi.StartServiceCtrlDispatcherW(table):
        error = getattr(ctypes, "get_last_error")()  # noqa: B009
        if error == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT:
            print("kanade-agent service: not started by the Service Control Manager "
                  "(use `kanade-agent run` in a console)", file=sys.stderr)
            return 2
        print(f"kanade-agent service: StartServiceCtrlDispatcherW failed ({error})",
              file=sys.stderr)
        return 1
    return outcome["code"]
