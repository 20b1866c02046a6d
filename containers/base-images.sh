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

if "${podman[@]}" image exists localhost/debian:bookworm &&
   "${podman[@]}" image exists localhost/debian:bookworm-slim; then
  exit 0
fi
if [[ ! -s "$cache/bookworm.tar" ]]; then
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  echo "base-images: debootstrap bookworm from $mirror (once; cached in $cache)" >&2
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -cf "$cache/bookworm.tar.partial" .
  mv "$cache/bookworm.tar.partial" "$cache/bookworm.tar"
fi
"${podman[@]}" import -q --change 'CMD ["/bin/bash"]' "$cache/bookworm.tar" localhost/debian:bookworm >/dev/null
# The slim image: the same system without documentation and locales, as Debian's -slim tags.
slim="$(mktemp -d)"
tar -C "$slim" -xf "$cache/bookworm.tar"
rm -rf "$slim"/usr/share/doc/* "$slim"/usr/share/man/* "$slim"/usr/share/info/* "$slim"/usr/share/locale/*
cat >"$slim/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
tar -C "$slim" -c . | "${podman[@]}" import -q --change 'CMD ["/bin/bash"]' - localhost/debian:bookworm-slim >/dev/null
rm -rf "$slim"
echo "base-images: localhost/debian:bookworm and localhost/debian:bookworm-slim ready" >&2
