#!/usr/bin/env bash
# The Dockerfile's two base images for podman, on a machine that cannot pull them (no image
# registry, as on our CI machines). Each one is pulled if it can be; otherwise a stand-in is made
# from Debian's packages (run as root: debootstrap and chroot):
#   debian:bookworm-slim          debootstrap --variant=minbase bookworm
#   rust:VER-slim-bookworm        that, plus gcc, libc6-dev, ca-certificates, this machine's Rust
#                                 toolchain (rustup's, which must be VER) and its CA bundle (the
#                                 build inside reaches crates.io through the same trust store)
# VER is the Dockerfile's RUST_VERSION. Images already present are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
DEBIAN=docker.io/library/debian:bookworm-slim
VER=$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)
RUST=docker.io/library/rust:${VER}-slim-bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

have() { podman image exists "$1"; }
pull() { timeout 60 podman pull -q "$1" >/dev/null 2>&1; }

missing=()
for img in "$DEBIAN" "$RUST"; do have "$img" || pull "$img" || missing+=("$img"); done
((${#missing[@]})) || exit 0

[ "$(id -u)" = 0 ] || { echo "base-images: cannot pull the base images; making stand-ins needs root" >&2; exit 2; }
command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
echo "base-images: debootstrap bookworm (minbase) from $MIRROR" >&2
debootstrap --variant=minbase bookworm "$root" "$MIRROR" >/dev/null
if ! have "$DEBIAN"; then
    tar -C "$root" -c . | podman import - "$DEBIAN" >/dev/null
    echo "base-images: made $DEBIAN" >&2
fi
have "$RUST" && exit 0

tc=$(rustup show active-toolchain | awk '{print $1}')
[ -d "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$tc" ] || { echo "base-images: no rustup toolchain '$tc'" >&2; exit 2; }
got=$(rustc --version | awk '{split($2, v, "."); print v[1] "." v[2]}')
[ "$got" = "$VER" ] || { echo "base-images: the Dockerfile wants Rust $VER, this machine has $got" >&2; exit 2; }
chroot "$root" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*'
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/usr/local/rustup/toolchains" "$root/usr/local/cargo/bin"
cp -a "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$tc" "$root/usr/local/rustup/toolchains/"
rm -rf "$root/usr/local/rustup/toolchains/$tc/share/doc"
printf 'default_toolchain = "%s"\nprofile = "minimal"\nversion = "12"\n' "$tc" >"$root/usr/local/rustup/settings.toml"
cp -a "${CARGO_HOME:-$HOME/.cargo}/bin/." "$root/usr/local/cargo/bin/"
tar -C "$root" -c . | podman import \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$RUST" >/dev/null
echo "base-images: made $RUST ($tc)" >&2
