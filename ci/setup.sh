#!/usr/bin/env bash
# Idempotent machine setup for development and CI: packages, the Python package, tracefs,
# dockerd, builder base images and the kernel packages the boot tests use.
# Downloads are cached under $DK_CACHE (outside the repo) so reruns are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export DK_CACHE=${DK_CACHE:-/var/cache/driverkit-ci}
mkdir -p "$DK_CACHE"
log() { printf '[setup %(%H:%M:%S)T] %s\n' -1 "$*"; }

APT_PACKAGES=(
  build-essential clang llvm libbpf1 libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config
  docker.io debootstrap debian-archive-keyring gpgv gnupg qemu-system-x86 busybox-static cpio kmod
  file util-linux dpkg zstd xz-utils ca-certificates curl python3-dev rpm rpm2cpio
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

log "pip: installing the project"
python3 -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v -E '^WARNING|Location' || true

if ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs nodev /sys/kernel/tracing || log "warning: could not mount tracefs"
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  (dockerd >/var/log/dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi
# Builder images, one per Debian suite. There is no registry here, so the bases come from
# debootstrap (`--base-from debootstrap`); the release strings only pick the suite.
log "docker: builder images"
driverkit images build --base-from debootstrap \
  --kernel 5.10.0-46-amd64 --kernel 6.1.0-56-amd64 \
  --kernel 6.12.118+deb13-amd64 --kernel 7.2.13+deb14-amd64

# Kernel packages and per-suite toolchains for the QEMU boot tests (cached in $DK_CACHE).
log "kernels: fetching the boot-test kernels and toolchains"
python3 -m ci.kernels fetch
python3 -m ci.kernels toolchain 10 12 14 16
log "setup done"
