"""Real OpenSearch and Elasticsearch nodes on loopback, every file from Maven Central, for the live tests.

Standard library only, so that `make engines-up` needs no virtual environment. `fetch` copies the
artifacts named in `engines/pom.xml` with Maven (cached in ~/.m2), `install` unzips each engine once and
adds what its zip lacks (the k-NN plugin; for OpenSearch 2.x the painless module, from its published jars),
and `start` runs a single node on free ports with a capped heap, waits for cluster health, and on any
failure stops it and raises with the engine's own log tail. Engines refuse to run as root: as root, nodes
run as the system user `p4r-engine`, created on first use.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

POM = Path(__file__).with_name("pom.xml")
CACHE = Path(os.environ.get("P4R_ENGINES_CACHE", Path.home() / ".cache" / "p4r-engines"))
# installs and data live where the unprivileged engine user can reach them (not under /root)
WORK = Path(os.environ.get("P4R_ENGINES_DIR", Path(tempfile.gettempdir()) / "p4r-engines"))
STATE = WORK / "state.json"
HEAP = os.environ.get("P4R_ENGINES_HEAP", "512m")
ENGINE_USER = "p4r-engine"
START_TIMEOUT_S = float(os.environ.get("P4R_ENGINES_START_TIMEOUT", "300"))
PAINLESS_JARS = ("lang-painless", "opensearch-scripting-painless-spi", "antlr4-runtime-4.13.1", "asm-9.7",
                 "asm-util-9.7", "asm-tree-9.7", "asm-commons-9.7", "asm-analysis-9.7")
# the descriptor and policy OpenSearch's build writes for modules/lang-painless (its plugin-metadata)
PAINLESS_DESCRIPTOR = """description=An easy, safe and fast scripting language for OpenSearch
version={version}
name=lang-painless
classname=org.opensearch.painless.PainlessPlugin
java.version=11
opensearch.version={version}
extended.plugins=
has.native.controller=false
"""
PAINLESS_POLICY = """grant {
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
"""


class EngineError(RuntimeError):
    """An engine could not be fetched, installed or started; the message carries the engine's own words."""


class EngineUnavailable(EngineError):
    """What running an engine needs (Java, Maven) is not on this machine."""


@dataclass(frozen=True)
class EngineSpec:
    name: str
    distribution: str  # "opensearch" or "elasticsearch": the p4r engine names are "opensearch" and "es"
    version: str
    java: tuple[int, int]  # the Java majors it runs on (OpenSearch 2.x needs the security manager: <= 23)
    plugins: tuple[str, ...] = ()  # plugin zips, installed with the engine's plugin tool
    painless_from_jars: bool = False  # the zip lacks modules/lang-painless (OpenSearch 2.x integ-test zip)
    settings: tuple[str, ...] = ()

    @property
    def p4r_engine(self) -> str:
        return "es" if self.distribution == "elasticsearch" else "opensearch"

    @property
    def zip_name(self) -> str:
        return f"{self.distribution}-{self.version}.zip"

    @property
    def java_env(self) -> str:
        return "ES_JAVA_HOME" if self.distribution == "elasticsearch" else "JAVA_HOME"

    @property
    def opts_env(self) -> str:
        return "ES_JAVA_OPTS" if self.distribution == "elasticsearch" else "OPENSEARCH_JAVA_OPTS"


SPECS = (
    EngineSpec("opensearch-3", "opensearch", "3.5.0", (21, 99), plugins=("opensearch-knn-3.5.0.0.zip",)),
    EngineSpec("opensearch-2", "opensearch", "2.19.1", (11, 23), plugins=("opensearch-knn-2.19.1.0.zip",),
               painless_from_jars=True),
    EngineSpec("elasticsearch-8", "elasticsearch", "8.19.0", (17, 24),
               settings=("xpack.security.enabled=false",)),
)


@dataclass
class Node:
    name: str
    engine: str  # p4r's --engine value
    version: str
    url: str
    pid: int
    home: str
    run_dir: str
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "process"}


# -- what is needed ------------------------------------------------------------------------------------
def java_home(spec: EngineSpec) -> Path:
    """A JDK whose major version the engine runs on: $JAVA_HOME first, then /usr/lib/jvm."""
    candidates = [Path(p) for p in (os.environ.get("JAVA_HOME"),) if p]
    jvm = Path("/usr/lib/jvm")
    candidates += sorted(p for p in jvm.iterdir() if p.is_dir()) if jvm.is_dir() else []
    for home in candidates:
        major = _java_major(home)
        if major and spec.java[0] <= major <= spec.java[1] and (home / "bin" / "java").is_file():
            return home
    raise EngineUnavailable(f"{spec.name} needs a JDK {spec.java[0]}..{spec.java[1]}; none found in $JAVA_HOME "
                            "or /usr/lib/jvm")


def _java_major(home: Path) -> int | None:
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("JAVA_VERSION="):
            version = line.split("=", 1)[1].strip('"')
            head = version.split(".")[0]
            return int(version.split(".")[1]) if head == "1" else int(head)
    return None


def missing_tools(specs: Iterable[EngineSpec] = SPECS) -> str | None:
    """Why engines cannot run here, or None."""
    if not shutil.which("mvn") and not all((CACHE / "artifacts" / s.zip_name).is_file() for s in specs):
        return "Maven (mvn) is not on PATH, and the engines are not fetched yet"
    for spec in specs:
        try:
            java_home(spec)
        except EngineUnavailable as exc:
            return str(exc)
    return None


# -- fetch and install ---------------------------------------------------------------------------------
def fetch(specs: Iterable[EngineSpec] = SPECS) -> Path:
    """Every artifact of the pom, into the cache (Maven itself caches in ~/.m2)."""
    artifacts = CACHE / "artifacts"
    wanted = [s.zip_name for s in specs] + [p for s in specs for p in s.plugins]
    if all((artifacts / name).is_file() for name in wanted):
        return artifacts
    if not shutil.which("mvn"):
        raise EngineUnavailable("Maven (mvn) is not on PATH: it fetches the engines from Maven Central")
    artifacts.mkdir(parents=True, exist_ok=True)
    command = ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy", f"-DoutputDirectory={artifacts}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EngineError(f"mvn could not fetch the engines (exit {done.returncode}):\n{_tail(done.stdout + done.stderr)}")
    return artifacts


def install(spec: EngineSpec) -> Path:
    """The engine's home, unzipped once (a `.p4r-ready` marker says it is complete)."""
    artifacts = fetch([spec])
    root = WORK / "installs" / f"{spec.name}-{spec.version}"
    home = root / f"{spec.distribution}-{spec.version}"
    if (root / ".p4r-ready").is_file():
        return home
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _unzip(artifacts / spec.zip_name, root)
    if spec.painless_from_jars:
        module = home / "modules" / "lang-painless"
        module.mkdir(parents=True)
        for prefix in PAINLESS_JARS:
            jar = prefix if prefix[-1].isdigit() else f"{prefix}-{spec.version}"
            shutil.copy(artifacts / f"{jar}.jar", module)
        (module / "plugin-descriptor.properties").write_text(PAINLESS_DESCRIPTOR.format(version=spec.version))
        (module / "plugin-security.policy").write_text(PAINLESS_POLICY)
    env = {**os.environ, spec.java_env: str(java_home(spec))}
    for plugin in spec.plugins:
        command = [str(home / "bin" / f"{spec.distribution}-plugin"), "install", "--batch", (artifacts / plugin).as_uri()]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise EngineError(f"{spec.name}: installing {plugin} failed:\n{_tail(done.stdout + done.stderr)}")
    (root / ".p4r-ready").touch()
    return home


def _unzip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            path = Path(z.extract(info, into))
            mode = info.external_attr >> 16
            if mode:
                path.chmod(mode & 0o777)


# -- run -------------------------------------------------------------------------------------------------
def start(spec: EngineSpec) -> Node:
    """A single node on free loopback ports, healthy, or an EngineError with its log tail (and no JVM left)."""
    home = install(spec)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=_ensure(WORK / "runs")))
    for sub in ("data", "logs", "tmp"):
        (run_dir / sub).mkdir()
    user = _engine_user()
    if user:
        _chown(home.parent, user)
        _chown(run_dir, user)
    port, transport_port = _free_port(), _free_port()
    settings = ["discovery.type=single-node", "network.host=127.0.0.1", f"http.port={port}",
                f"transport.port={transport_port}", f"path.data={run_dir / 'data'}", f"path.logs={run_dir / 'logs'}",
                f"cluster.name=p4r-{spec.name}", "cluster.routing.allocation.disk.threshold_enabled=false",
                *spec.settings]
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "ES_JAVA_HOME", "JAVA_TOOL_OPTIONS")}
    env.update({spec.java_env: str(java_home(spec)), spec.opts_env: f"-Xms{HEAP} -Xmx{HEAP}",
                "OPENSEARCH_TMPDIR": str(run_dir / "tmp"), "ES_TMPDIR": str(run_dir / "tmp")})
    command = [str(home / "bin" / spec.distribution), *[a for s in settings for a in ("-E", s)]]
    with open(run_dir / "stdout.log", "wb") as out:
        process = subprocess.Popen(command, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, user=user)
    node = Node(spec.name, spec.p4r_engine, spec.version, f"http://127.0.0.1:{port}", process.pid, str(home),
                str(run_dir), process)
    try:
        _wait_healthy(node)
    except BaseException:
        stop(node)
        raise
    return node


def start_all(specs: Iterable[EngineSpec] = SPECS) -> list[Node]:
    """Every engine, started side by side; if one fails, the others are stopped too."""
    specs = list(specs)
    fetch(specs)
    with ThreadPoolExecutor(len(specs)) as pool:
        futures = [pool.submit(start, s) for s in specs]
    nodes, errors = [], []
    for future in futures:
        try:
            nodes.append(future.result())
        except EngineError as exc:
            errors.append(str(exc))
    if errors:
        for node in nodes:
            stop(node)
        raise EngineError("\n\n".join(errors))
    return nodes


def stop(node: Node, timeout: float = 60.0) -> None:
    """SIGTERM to the node's process group (Elasticsearch's launcher has a server child), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(node.pid):
            if node.process is not None:
                node.process.poll()
            time.sleep(0.2)
        if not _group_alive(node.pid):
            break
    if node.process is not None:
        node.process.wait(timeout=10)
    shutil.rmtree(node.run_dir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie leader still counts as alive to killpg; only live members matter
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _wait_healthy(node: Node) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    url = f"{node.url}/_cluster/health?wait_for_status=yellow&timeout=2s"
    while time.monotonic() < deadline:
        if node.process is not None and node.process.poll() is not None:
            raise EngineError(f"{node.name} {node.version} exited with {node.process.returncode} while starting:\n"
                              f"{log_tail(node)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if json.load(answer).get("status") in ("green", "yellow"):
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise EngineError(f"{node.name} {node.version} was not healthy after {START_TIMEOUT_S:.0f} s:\n{log_tail(node)}")


def log_tail(node: Node, lines: int = 40) -> str:
    run = Path(node.run_dir)
    logs = [run / "stdout.log", *sorted((run / "logs").glob("*.log"))]
    text = "\n".join(p.read_text(errors="replace") for p in logs if p.is_file())
    return _tail(text, lines)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def _engine_user() -> str | None:
    """None when not root; as root, the system user the engines run as (created if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(ENGINE_USER)
    except KeyError:
        done = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ENGINE_USER],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0 and "already exists" not in done.stderr:
            raise EngineError(f"engines refuse to run as root, and creating the user {ENGINE_USER!r} failed: "
                              f"{done.stderr.strip()}")
    return ENGINE_USER


def _chown(path: Path, user: str) -> None:
    subprocess.run(["chown", "-R", user, str(path)], check=True)
    for parent in path.parents:  # every folder above must be enterable by the engine user
        if parent == Path(parent.anchor):
            break
        if parent.stat().st_mode & 0o001 == 0:
            raise EngineError(f"{parent} is not enterable by other users; set P4R_ENGINES_DIR to a folder that is")


# -- state files: what is running, for `python -m engines down` and for a crashed test run ---------------------
def _state_file(owner: str) -> Path:
    return WORK / f"state-{owner}.json"


def save_state(nodes: list[Node], owner: str = "up") -> None:
    """Owner "up" is `make engines-up`; a test run saves under its pid, so a crashed run's nodes can be reaped."""
    _ensure(WORK)
    path = _state_file(owner)
    if nodes:
        path.write_text(json.dumps([n.to_json() for n in nodes], indent=2))
    else:
        path.unlink(missing_ok=True)


def load_state(owner: str = "up") -> list[Node]:
    try:
        return [Node(**row) for row in json.loads(_state_file(owner).read_text())]
    except FileNotFoundError:
        return []


def reap_orphans() -> list[Node]:
    """Stop the nodes of test runs that died without stopping them (their pid is gone)."""
    reaped = []
    for path in WORK.glob("state-*.json") if WORK.is_dir() else ():
        owner = path.stem.removeprefix("state-")
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            for node in load_state(owner):
                stop(node)
                reaped.append(node)
            path.unlink(missing_ok=True)
    return reaped


def exports(nodes: list[Node]) -> dict[str, str]:
    """The variables the live tests (and `p4r --url`) read: comma-separated URLs per engine."""
    by_engine: dict[str, list[str]] = {}
    for node in nodes:
        by_engine.setdefault(node.engine, []).append(node.url)
    names = {"opensearch": "P4R_OPENSEARCH_URL", "es": "P4R_ES_URL"}
    return {names[engine]: ",".join(urls) for engine, urls in by_engine.items()}
