#!/usr/bin/env bash
# Makes this machine able to build and run the images of the Dockerfile
# without Docker or a registry (used by tests/containers.rs; run it as root):
#
# 1. installs podman, runc, debootstrap, podman-compose and the dnsname CNI
#    plugin from the OS packages when one is missing (apt-get update only if
#    the install fails);
# 2. writes $CT_DIR/containers.conf (runc, cgroupfs, no default ulimits: the
#    defaults raise limits a sandbox may not allow);
# 3. makes the base image localhost/telestion-ct-base:<hash> from
#    `debootstrap --variant=minbase bookworm` against the Debian mirror apt
#    uses, unless it exists; the root file system is cached as
#    $CT_DIR/base-<hash>.tar, <hash> being that of the suite, variant and
#    mirror, so later runs (and a cleared image store) skip debootstrap.
#
# Prints `CONTAINERS_CONF=...` and `BASE_IMAGE=...` on its last two lines.
set -euo pipefail
CT_DIR="${CT_DIR:-/var/tmp/telestion-ct}"
mkdir -p "$CT_DIR"
exec 9>"$CT_DIR/lock"
flock -w 900 9

need=()
for tool in podman runc debootstrap podman-compose; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# Name resolution between containers of a compose project's network.
[ -x /usr/lib/cni/dnsname ] || need+=(dnsname)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "error: ${need[*]} missing; run as root (apt-get install podman runc debootstrap podman-compose golang-github-containernetworking-plugin-dnsname)" >&2
        exit 1
    fi
    packages=(podman runc debootstrap podman-compose golang-github-containernetworking-plugin-dnsname)
    echo "installing ${packages[*]} (missing: ${need[*]})" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${packages[@]}" >&2 \
        || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${packages[@]}" >&2; }
fi

cat >"$CT_DIR/containers.conf.new" <<'CONF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
mv "$CT_DIR/containers.conf.new" "$CT_DIR/containers.conf"
export CONTAINERS_CONF="$CT_DIR/containers.conf"

# The Debian mirror apt uses (deb822 or one-line format).
mirror="${DEBOOTSTRAP_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {print $2}' | grep -E '/debian/?$' | head -n1 || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1 == "deb" && $3 == "bookworm" {print $2}' | head -n1 || true)
fi
mirror="${mirror:-http://deb.debian.org/debian}"
hash=$(printf 'bookworm minbase %s v1\n' "$mirror" | sha256sum | cut -c1-12)
image="localhost/telestion-ct-base:$hash"
if ! podman image exists "$image"; then
    tarball="$CT_DIR/base-$hash.tar"
    if [ ! -s "$tarball" ]; then
        echo "debootstrap --variant=minbase bookworm from $mirror" >&2
        root="$CT_DIR/rootfs-$hash"
        rm -rf "$root"
        timeout 600 debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" -cf "$tarball.new" .
        mv "$tarball.new" "$tarball"
        rm -rf "$root"
    fi
    timeout 300 podman import "$tarball" "$image" >&2
fi
echo "CONTAINERS_CONF=$CONTAINERS_CONF"
echo "BASE_IMAGE=$image"
