#!/usr/bin/env bash
# Idempotent machine setup for development and CI: packages, the Python package, tracefs,
# dockerd, the boot-test kernel images and the builder images.
# Downloads are cached in driverkit's cache (outside the repo: $DK_CACHE, else
# driverkit.cache.default_cache_dir()) so reruns are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[setup %(%H:%M:%S)T] %s\n' -1 "$*"; }

APT_PACKAGES=(
  build-essential clang llvm libbpf1 libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config
  docker.io debootstrap debian-archive-keyring gpgv gnupg qemu-system-x86 busybox-static cpio kmod
  file util-linux dpkg zstd xz-utils ca-certificates curl python3-dev rpm rpm2cpio
  nginx-light libnginx-mod-http-dav-ext chromium docker-registry createrepo-c valgrind
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
python3 -m pip install -q --disable-pip-version-check -e '.[build,dev]' 2>&1 | grep -v -E '^WARNING|Location' || true

if ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs nodev /sys/kernel/tracing || log "warning: could not mount tracefs"
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  (dockerd >/var/log/dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi
# The boot-test kernels, resolved on the mirror now (it drops superseded ABIs, so no
# release is written here), and their boot images (cached there). The module and
# probes are built by `driverkit build` itself when the tests or ci.bootverify need them.
log "kernels: resolving and fetching the boot-test kernel images"
python3 -m ci.kernels prune-legacy  # apt lists, chroots and trees ci/ no longer uses
python3 -m ci.kernels fetch
releases=$(python3 -m ci.kernels resolve --compile-set --releases)
mapfile -t KERNELS <<<"$releases"
# Builder images, one per Debian suite those kernels need. There is no registry here, so
# the bases come from debootstrap (`--base-from debootstrap`).
log "docker: builder images"
driverkit images build --base-from debootstrap --target debian "${KERNELS[@]/#/--kernel=}"
# The farm image the Swarm tests load into their own daemon (bookworm's builder plus
# driverkit), built here so the tests do not wait on its apt step.
log "docker: farm image"
driverkit images distribute --base-from debootstrap --target debian \
  --kernel="$(python3 -m ci.kernels resolve 6.1 | cut -d' ' -f2)"
log "setup done"
