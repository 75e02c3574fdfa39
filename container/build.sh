#!/usr/bin/env bash
# Build the OCI image of ocinest from Debian 12's packages and the project's wheel, with no
# base image and no RUN step:
#   1. the wheels of ocinest and of its dependencies (at the versions of constraints.txt),
#      built here with python3, which must be a 3.11 like Debian 12's;
#   2. a minimal Debian 12 root (mmdebstrap: the essential packages, /usr merged without the
#      usrmerge package, no documentation, plus python3-venv) with ocinest and its s3 and
#      postgres extras in a venv at /opt/ocinest, installed from those wheels only (pip
#      removed after), and a user ocinest (uid and gid 10001) owning /var/lib/ocinest;
#   3. buildah: that root as the one layer of an image from scratch, with its configuration
#      (entrypoint, user, volume, port, labels), committed to DEST.
#
# Usage, as root:  container/build.sh DEST
#   DEST is any containers-image destination: oci:DIR:TAG (an OCI layout),
#   oci-archive:FILE.tar:TAG, docker://HOST/NAME:TAG (pushed), ...
# Needs mmdebstrap, buildah and Debian's mirrors; keeps nothing once done (buildah works in
# a temporary store of its own).
set -euo pipefail

dest=${1:?usage: container/build.sh DEST (e.g. oci:./ocinest-image:latest)}
cd "$(dirname "${BASH_SOURCE[0]}")/.."

UID_GID=10001
DATA=/var/lib/ocinest
VENV=/opt/ocinest
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
    { echo "build.sh: python3 must be 3.11, the Python of Debian 12" >&2; exit 1; }

work=$(mktemp -d /tmp/ocinest-image.XXXXXX)
container=""
buildah_() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }
cleanup() {
    [[ -z $container ]] || buildah_ rm "$container" >/dev/null || true
    # vfs layers may hold files only root can remove; buildah's store is ours alone.
    rm -rf -- "$work"
}
trap cleanup EXIT

echo "build.sh: wheels" >&2
python3 -m pip wheel -q --disable-pip-version-check -c constraints.txt --wheel-dir "$work/wheels" \
    '.[s3,postgres]'

echo "build.sh: Debian 12 root" >&2
# Inside the root, pip sees only the wheels (no index, no configuration from here).
pip_env="env -i PATH=/usr/bin:/bin HOME=/root PIP_NO_INDEX=1 PIP_NO_CACHE_DIR=1 \
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=/tmp/wheels"
mmdebstrap --quiet --variant=essential --include=python3-venv \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt=force-unsafe-io \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook="copy-in $work/wheels /tmp" \
    --customize-hook="chroot \"\$1\" $pip_env python3 -m venv $VENV" \
    --customize-hook="chroot \"\$1\" $pip_env $VENV/bin/pip install -q 'ocinest[s3,postgres]==$version'" \
    --customize-hook="chroot \"\$1\" $pip_env $VENV/bin/pip uninstall -q -y pip setuptools" \
    --customize-hook='rm -rf "$1/tmp/wheels"' \
    --customize-hook="echo 'ocinest:x:$UID_GID:$UID_GID:ocinest:$DATA:/usr/sbin/nologin' >>\"\$1/etc/passwd\"" \
    --customize-hook="echo 'ocinest:x:$UID_GID:' >>\"\$1/etc/group\"" \
    --customize-hook="mkdir -p \"\$1$DATA\" && chown $UID_GID:$UID_GID \"\$1$DATA\"" \
    bookworm "$work/rootfs.tar"

echo "build.sh: image" >&2
container=$(buildah_ from scratch)
buildah_ add "$container" "$work/rootfs.tar" / >/dev/null
buildah_ config \
    --os linux --arch "$(dpkg --print-architecture)" \
    --entrypoint "[\"$VENV/bin/ocinest\", \"serve\", \"--addr\", \"0.0.0.0:5000\", \"--data\", \"$DATA\"]" \
    --cmd '' \
    --user "$UID_GID:$UID_GID" \
    --workingdir "$DATA" \
    --volume "$DATA" \
    --port 5000/tcp \
    --env "PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --env PYTHONUNBUFFERED=1 \
    --label org.opencontainers.image.title=ocinest \
    --label "org.opencontainers.image.description=An OCI registry with nested-artifact indexes" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "$container"
buildah_ commit --quiet --format oci --disable-compression=false "$container" "$dest" >/dev/null
echo "build.sh: ocinest $version written to $dest" >&2
