#!/usr/bin/env bash
# Makes the base images the Containerfile starts from, without a registry:
# debootstrap Debian 12 (bookworm) once, import it as
# localhost/debian:bookworm, and a slimmer copy (no docs, man pages or
# locales) as localhost/debian:bookworm-slim. The root filesystem tarball is
# cached in $OCCASIONAL_CACHE (default /var/cache/occasional); podman keeps
# the images between runs too.
set -euo pipefail
podman=(podman --storage-driver vfs)
cache="${OCCASIONAL_CACHE:-/var/cache/occasional}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$cache"

# Bump when the way the images are made changes: older images and tarballs
# (version 1 had a 0700 "/") are then made again.
version=2
label() { "${podman[@]}" image inspect --format '{{index .Labels "occasional.base"}}' "$1" 2>/dev/null; }
if [[ "$(label localhost/debian:bookworm)" == "$version" &&
      "$(label localhost/debian:bookworm-slim)" == "$version" ]]; then
  exit 0
fi
tarball="$cache/bookworm-v$version.tar"
if [[ ! -s "$tarball" ]]; then
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  # mktemp -d makes a 0700 directory, and the tarball records it as the
  # image's "/": no user but root could then reach any path in the image.
  chmod 0755 "$root"
  echo "base-images: debootstrap bookworm from $mirror (once; cached in $cache)" >&2
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  rm -f "$cache/bookworm.tar"  # version 1's
fi
changes=(--change 'CMD ["/bin/bash"]' --change "LABEL occasional.base=$version")
"${podman[@]}" import -q "${changes[@]}" "$tarball" localhost/debian:bookworm >/dev/null
# The slim image: the same system without documentation and locales, as Debian's -slim tags.
slim="$(mktemp -d)"
chmod 0755 "$slim"
tar -C "$slim" -xf "$tarball"
rm -rf "$slim"/usr/share/doc/* "$slim"/usr/share/man/* "$slim"/usr/share/info/* "$slim"/usr/share/locale/*
cat >"$slim/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
tar -C "$slim" -c . | "${podman[@]}" import -q "${changes[@]}" - localhost/debian:bookworm-slim >/dev/null
rm -rf "$slim"
echo "base-images: localhost/debian:bookworm and localhost/debian:bookworm-slim ready" >&2
