"""The `p4r serve` process of bench_serve.py: start it on a free loopback port, wait for /ready, stop it,
and read its memory and CPU from /proc."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

P4R = Path(sys.executable).with_name("p4r")
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the server gets SIGTERM if this process dies


def start_server(index: Path, args, log_path: Path) -> tuple[subprocess.Popen, list[str]]:
    command = [str(P4R), "serve", "--index", str(index), "--host", "127.0.0.1", "--port", str(args.port),
               "--workers", str(args.workers), "--queue", str(args.queue), "--timeout", f"{args.timeout:g}"]
    log = log_path.open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True,
                            preexec_fn=_die_with_parent)  # noqa: PLW1509 (one prctl call, no locks)
    log.close()
    return proc, command


def wait_ready(proc: subprocess.Popen, base: str, log_path: Path, limit_s: float = 300) -> float:
    start = time.perf_counter()
    with httpx.Client(base_url=base, trust_env=False, timeout=5) as client:
        while time.perf_counter() - start < limit_s:
            if proc.poll() is not None:
                raise SystemExit(f"p4r serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if client.get("/ready").status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    raise SystemExit(f"p4r serve was not ready within {limit_s:.0f}s:\n{log_path.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident MB; VmRSS = RssAnon (heap) + RssFile (touched pages of mapped files: the index) + RssShmem."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def rss_parts(pid: int) -> dict:
    return {f"{f.lower()}_mb": rss_mb(pid, f) for f in ("VmRSS", "RssAnon", "RssFile")}


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime


def server_log_summary(log_path: Path) -> dict:
    text = log_path.read_text(errors="replace").splitlines()
    access = [line for line in text if '"POST /v1/' in line]
    not_ok = Counter(line.rsplit('" ', 1)[-1].split()[0] for line in access if '" 200' not in line)
    return {"lines": len(text), "access_lines": len(access), "non_200": dict(not_ok),
            "tracebacks": sum("Traceback" in line for line in text),
            "clean_shutdown": any("Finished server process" in line for line in text),
            "errors": [line for line in text if "ERROR" in line][:10]}
