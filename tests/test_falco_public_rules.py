"""Falco's public rules, unmodified, under `rt-engine run --driver core` on the host kernel.

Real: the three rules files of falcosecurity/rules (tests/fixtures/falco_rules/, commit in
SOURCE.md), the CO-RE probe on this host's kernel, the engine as a user starts it, and every
trigger below: real programs doing what each rule describes (reading /etc/shadow, writing
below /etc, truncating a log, setting a setuid bit, ptrace-attaching, executing from
/dev/shm and from a memfd, ...), and a real Docker container for the container rule.
Stood in: a harmless program under the name a rule looks for (a copy of `true` named
`nmap`, a Python interpreter named `nginx`), because the real tools are not installed
here and running them would not make the rule any more real: the rule sees the name, the
path and the syscalls.

One engine runs for the module (starting it compiles ~250 rules, macros and lists); each
test makes its own activity with a unique marker in a path or argument and waits for the
one alert that carries it, checking the output fields the rule prints.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, require
from tests.test_engine_live import Engine, core_probe  # noqa: F401  (fixture)

pytestmark = pytest.mark.bpf

RULES_DIR = FIXTURES / "falco_rules"
RULE_FILES = [RULES_DIR / "falco_rules.yaml", RULES_DIR / "falco-incubating_rules.yaml",
              RULES_DIR / "falco-sandbox_rules.yaml"]
# Falco's own default: container fields appended to every syscall rule's JSON output
# (falco.yaml's append_output), so container rules can be checked by their container.
ENGINE_CONFIG = """\
append_output:
  - match:
      source: syscall
    extra_fields:
      - container.id
      - container.name
      - container.image.repository
      - container.privileged
      - k8s.ns.name
      - k8s.pod.name
"""

Alert = dict[str, object]


def _fields(alert: Alert) -> dict[str, object]:
    fields = alert.get("output_fields")
    assert isinstance(fields, dict), alert
    return fields


@pytest.fixture(scope="module")
def falco_engine(core_probe: Path,  # noqa: F811
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    config = tmp_path_factory.mktemp("engine") / "engine.yaml"
    config.write_text(ENGINE_CONFIG)
    args: list[str | Path] = ["--driver", "core", "--probe", core_probe, "--json",
                              "--config", config]
    for path in RULE_FILES:
        args += ["--rules", path]
    engine = Engine(*args)
    try:
        engine.wait_running(timeout=120)
        yield engine
    finally:
        if engine.proc.poll() is None:
            engine.proc.send_signal(signal.SIGTERM)
            try:
                engine.proc.wait(30)
            except subprocess.TimeoutExpired:
                engine.proc.kill()
                engine.proc.wait(10)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory whose name is unique to this test: alerts are matched by it."""
    path = tmp_path / f"rt-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    return path


def _renamed(binary: str, directory: Path, name: str) -> Path:
    """A copy of `binary` under `name`: the name is what the rule matches on."""
    source = shutil.which(binary) if "/" not in binary else binary
    assert source is not None, f"{binary} is not installed"
    target = directory / name
    shutil.copy2(os.path.realpath(source), target)
    return target


def _python_named(directory: Path, name: str) -> Path:
    return _renamed(os.path.realpath(sys.executable), directory, name)


def _wait(engine: Engine, rule: str, match: Callable[[dict[str, object]], bool],
          timeout: float = 45) -> dict[str, object]:
    alert = engine.wait_alert(
        lambda a: a.get("rule") == rule and match(_fields(a)), timeout=timeout)
    assert alert.get("source") == "syscall"
    return _fields(alert)


def test_read_sensitive_file_untrusted(falco_engine: Engine, workdir: Path) -> None:
    reader = _renamed("cat", workdir, "rtshadowcat")
    subprocess.run([str(reader), "/etc/shadow"], check=True, capture_output=True, timeout=10)
    fields = _wait(falco_engine, "Read sensitive file untrusted",
                   lambda f: f.get("proc.exepath") == str(reader))
    assert fields["fd.name"] == "/etc/shadow"
    assert fields["proc.name"] == "rtshadowcat"
    assert fields["user.name"] == "root"
    assert fields["proc.cmdline"] == "rtshadowcat /etc/shadow"


def test_write_below_etc(falco_engine: Engine, workdir: Path) -> None:
    writer = _renamed("touch", workdir, "rtetcwriter")
    target = Path("/etc") / f"{workdir.name}.conf"
    try:
        subprocess.run([str(writer), str(target)], check=True, timeout=10)
        fields = _wait(falco_engine, "Write below etc", lambda f: f.get("fd.name") == str(target))
        assert fields["proc.name"] == "rtetcwriter"
    finally:
        target.unlink(missing_ok=True)


def test_clear_log_activities(falco_engine: Engine, workdir: Path) -> None:
    log = Path("/var/log") / f"{workdir.name}.log"
    # Created without O_TRUNC ("x"): only the child below truncates it.
    with log.open("x") as created:
        created.write("a line an attacker wants gone\n")
    try:
        subprocess.run([sys.executable, "-c",
                        f"open({str(log)!r}, 'w').close()"], check=True, timeout=10)
        fields = _wait(falco_engine, "Clear Log Activities",
                       lambda f: f.get("fd.name") == str(log))
        assert fields["evt.type"] in ("open", "openat", "openat2")
        assert str(fields["proc.cmdline"]).endswith(f" -c open({str(log)!r}, 'w').close()")
    finally:
        log.unlink(missing_ok=True)


def test_set_setuid_bit(falco_engine: Engine, workdir: Path) -> None:
    target = workdir / "suid-me"
    target.write_text("")
    subprocess.run(["chmod", "u+s", str(target)], check=True, timeout=10)
    fields = _wait(falco_engine, "Set Setuid or Setgid bit",
                   lambda f: f.get("evt.arg.filename") == str(target))
    assert "S_ISUID" in str(fields["evt.arg.mode"])
    assert fields["proc.name"] == "chmod"


def test_non_sudo_setuid(falco_engine: Engine, workdir: Path) -> None:
    # A program running as nobody asks to become root: refused by the kernel, seen by
    # the rule (Falco's rule does not look at the result).
    code = "import os\ntry:\n    os.setuid(0)\nexcept PermissionError:\n    pass\n"
    runner = _python_named(workdir, "rtsetuider")
    workdir.chmod(0o755)
    workdir.parent.chmod(0o755)
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                    str(runner), "-c", code], check=True, timeout=20)
    fields = _wait(falco_engine, "Non sudo setuid",
                   lambda f: f.get("proc.exepath") == str(runner))
    assert fields["user.uid"] == 65534
    assert fields["proc.name"] == "rtsetuider"
    # The child's own exe and command line, not its parent's (events in ts order).
    assert str(fields["proc.cmdline"]).startswith("rtsetuider -c ")


def test_run_shell_untrusted(falco_engine: Engine, workdir: Path) -> None:
    server = _python_named(workdir, "nginx")
    marker = workdir.name
    subprocess.run([str(server), "-c",
                    f"import subprocess; subprocess.run(['sh', '-c', 'echo {marker}'])"],
                   check=True, capture_output=True, timeout=20)
    fields = _wait(falco_engine, "Run shell untrusted",
                   lambda f: marker in str(f.get("proc.cmdline")))
    assert fields["proc.name"] == "sh"
    assert fields["proc.pname"] == "nginx"


def test_create_symlink_over_sensitive_files(falco_engine: Engine, workdir: Path) -> None:
    link = workdir / "shadow-link"
    subprocess.run(["ln", "-s", "/etc/shadow", str(link)], check=True, timeout=10)
    fields = _wait(falco_engine, "Create Symlink Over Sensitive Files",
                   lambda f: f.get("evt.arg.linkpath") == str(link))
    assert fields["evt.arg.target"] == "/etc/shadow"
    assert fields["proc.name"] == "ln"


def test_search_private_keys(falco_engine: Engine, workdir: Path) -> None:
    subprocess.run(["find", str(workdir), "-name", "id_rsa"], check=True, timeout=10)
    fields = _wait(falco_engine, "Search Private Keys or Passwords",
                   lambda f: workdir.name in str(f.get("proc.cmdline")))
    assert fields["proc.name"] == "find"


def test_network_tool_on_host(falco_engine: Engine, workdir: Path) -> None:
    tool = _renamed("true", workdir, "nmap")
    subprocess.run([str(tool), workdir.name], check=True, timeout=10)
    fields = _wait(falco_engine, "Launch Suspicious Network Tool on Host",
                   lambda f: f.get("proc.exepath") == str(tool))
    assert fields["proc.name"] == "nmap"
    assert fields["proc.cmdline"] == f"nmap {workdir.name}"


def test_execution_from_dev_shm(falco_engine: Engine, workdir: Path) -> None:
    shm = Path("/dev/shm") / workdir.name
    shutil.copy2(os.path.realpath(shutil.which("true") or "/bin/true"), shm)
    try:
        subprocess.run([str(shm)], check=True, timeout=10)
        fields = _wait(falco_engine, "Execution from /dev/shm",
                       lambda f: f.get("proc.exepath") == str(shm))
        assert fields["proc.name"] == workdir.name[:15]
    finally:
        shm.unlink(missing_ok=True)


def test_fileless_execution_via_memfd(falco_engine: Engine, workdir: Path) -> None:
    marker = workdir.name
    code = (
        "import os, shutil, sys\n"
        "fd = os.memfd_create('rt-test-memfd')\n"
        "with open(shutil.which('true'), 'rb') as f:\n"
        "    os.write(fd, f.read())\n"
        # fexecve: execveat(fd, "", AT_EMPTY_PATH); `true` ignores the marker argument.
        f"os.execve(fd, [{marker!r}, {marker!r}], dict(os.environ))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=10)
    rule = "Fileless execution via memfd_create"
    alert = falco_engine.wait_alert(
        lambda a: a.get("rule") == rule
        and str(_fields(a).get("proc.cmdline")).endswith(f" {marker}"), timeout=45)
    fields = _fields(alert)
    assert "EXE_FROM_MEMFD" in str(fields["evt.arg.flags"])
    assert fields["evt.res"] == "SUCCESS"
    # The file the kernel runs, as Falco prints it (libsinsp's trusted exe path).
    assert fields["proc.exepath"] == "/memfd:rt-test-memfd (deleted)"
    assert "proc_exepath=/memfd:rt-test-memfd (deleted) " in str(alert["output"])
    # The kernel names the process after the memfd (6.14+) or the fd number before that.
    assert str(fields["proc.name"]) in ("memfd:rt-test-memfd"[:15], "3", "4", "5")


PTRACE_ATTACH = 16


def test_ptrace_attached(falco_engine: Engine, workdir: Path) -> None:
    victim = subprocess.Popen(["sleep", "30"])
    tracer = _python_named(workdir, "rttracer")
    code = (
        "import ctypes, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"pid = {victim.pid}\n"
        f"if libc.ptrace({PTRACE_ATTACH}, pid, None, None) != 0:\n"
        "    sys.exit('ptrace: errno %d' % ctypes.get_errno())\n"
        "os.waitpid(pid, 0)\n"
        "libc.ptrace(17, pid, None, None)  # PTRACE_DETACH\n"
    )
    try:
        subprocess.run([str(tracer), "-c", code], check=True, timeout=20)
        fields = _wait(falco_engine, "PTRACE attached to process",
                       lambda f: f.get("proc.exepath") == str(tracer))
        assert fields["proc.name"] == "rttracer"
        assert fields["evt.type"] == "ptrace"
        assert str(fields["proc.pcmdline"]).startswith(("python", "pytest"))
    finally:
        victim.kill()
        victim.wait()
    assert ctypes.sizeof(ctypes.c_long) == 8  # the request numbers above are x86_64's


def _docker_image() -> str:
    listing = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                             capture_output=True, text=True, timeout=30, check=False)
    images = [line for line in listing.stdout.split()
              if line.startswith("driverkit-builder-")]
    require(bool(images), "needs a local driverkit builder image (ci/setup.sh builds them)")
    return sorted(images)[0]


@pytest.mark.docker
def test_container_reads_sensitive_file(falco_engine: Engine, workdir: Path) -> None:
    """A real Docker container (with the pod labels the CRI sets) reads /etc/shadow: the
    rule fires with the container's identity from Docker's API. Not privileged: runc cannot
    apply a privileged container's capabilities on this host, so `container.privileged`
    true is checked on a created container in test_engine_containers.py."""
    image = _docker_image()
    name = f"rt-falco-{workdir.name}"
    run = subprocess.run(
        ["docker", "run", "--rm", "--name", name, "--network", "none",
         "--label", "io.kubernetes.pod.name=web-0",
         "--label", "io.kubernetes.pod.namespace=shop",
         "--entrypoint", "sh", image, "-c",
         f"sleep 2; cp /bin/cat /tmp/{workdir.name[:12]}; /tmp/{workdir.name[:12]} /etc/shadow"
         " >/dev/null; sleep 1"],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    fields = _wait(falco_engine, "Read sensitive file untrusted",
                   lambda f: f.get("proc.name") == workdir.name[:12], timeout=60)
    assert fields["fd.name"] == "/etc/shadow"
    assert fields["container.name"] == name
    assert fields["container.image.repository"] == image.split(":")[0]
    assert fields["container.privileged"] is False
    container_id = str(fields["container.id"])
    assert len(container_id) == 12 and container_id != "host"
    assert fields["k8s.pod.name"] == "web-0"
    assert fields["k8s.ns.name"] == "shop"


@pytest.mark.docker
def test_packet_socket_in_container(falco_engine: Engine, workdir: Path) -> None:
    """A real container opens an AF_PACKET socket (Docker grants CAP_NET_RAW): the rule
    tests `evt.arg.domain contains AF_PACKET`, so the domain must render by name."""
    name = f"rt-falco-pkt-{workdir.name}"
    run = subprocess.run(
        ["docker", "run", "--rm", "--name", name, "--network", "none", "--entrypoint",
         "python3", _docker_image(), "-c",
         "import socket, time; time.sleep(2);"
         " socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close(); time.sleep(1)"],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    fields = _wait(falco_engine, "Packet socket created in container",
                   lambda f: f.get("container.name") == name, timeout=60)
    assert fields["evt.type"] == "socket"
    assert fields["proc.name"] == "python3"
    assert "domain=AF_PACKET" in str(fields["evt.args"])


def test_engine_kept_up(falco_engine: Engine) -> None:
    """Run last in the module: the engine survived every trigger."""
    time.sleep(0.5)
    assert falco_engine.proc.poll() is None, "".join(falco_engine.stderr[-40:])
