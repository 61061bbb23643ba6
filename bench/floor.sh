#!/bin/sh
# The floor: the least a deploy must do, as a plain shell script over ONE multiplexed OpenSSH
# connection per host (ControlMaster), hosts in parallel. Same layout and steps as mlctl:
# stream the git archive, extract into releases/<id>, link the venv (the current one, or for a
# cold deploy one built from an uploaded wheelhouse) and the shared .env/media/logs,
# collectstatic, switch `current` atomically, restart the gunicorn unit, probe /healthz through
# nginx until it serves the new release id.
#
#   floor.sh REPO COMMIT RELEASE_ID HOST...
# env: SSH_CONFIG (the farm's; pins known_hosts), CONTROL_DIR (sockets), DEPLOY_TO, UNIT,
#      COLD=1 with PYVER (3.11) and PLATFORMS ("manylinux_2_36_x86_64 ...") for a cold deploy.
set -eu
repo=$1 commit=$2 rid=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
: "${SSH_CONFIG:?}" "${CONTROL_DIR:?}"
D=${DEPLOY_TO:-/srv/djangoapp}
unit=${UNIT:-gunicorn-djangoapp}
remote=$(grep -v "^ *#" "$here/floor-remote.sh")
case $remote in *"'"*) echo "floor-remote.sh must not contain single quotes" >&2; exit 2 ;; esac

tmp=$(mktemp -d)
mkdir -p "$CONTROL_DIR"
cleanup() {
    for h in "$@"; do
        ssh -F "$SSH_CONFIG" -o ControlPath="$CONTROL_DIR/$h" -O exit "$h" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap 'cleanup "$@"' EXIT
trap 'exit 130' INT TERM

# One master connection per host, opened in parallel with the local work.
for h in "$@"; do
    ssh -F "$SSH_CONFIG" -o ControlMaster=yes -o ControlPath="$CONTROL_DIR/$h" \
        -o ControlPersist=yes -fN "$h" &
done

git -C "$repo" archive --format=tar "$commit" | gzip -1 >"$tmp/release.tar.gz"
hash="" wh=""
if [ "${COLD:-}" = 1 ]; then
    git -C "$repo" show "$commit:requirements.txt" >"$tmp/requirements.txt"
    hash=$(sha256sum "$tmp/requirements.txt" | cut -c1-16)
    wh="$D/wheelhouse/$hash"
    plat=""
    for p in $PLATFORMS; do plat="$plat --platform $p"; done
    # shellcheck disable=SC2086
    python3 -m pip download --disable-pip-version-check -q --only-binary=:all: \
        --dest "$tmp/wheels" -r "$tmp/requirements.txt" --python-version "$PYVER" \
        --implementation cp --abi "cp$(echo "$PYVER" | tr -d .)" $plat
    tar -cf "$tmp/wheels.tar" -C "$tmp/wheels" .
fi
wait # the masters are up

deploy() {
    h=$1
    s="ssh -F $SSH_CONFIG -o ControlMaster=no -o ControlPath=$CONTROL_DIR/$h $h"
    if [ -n "$hash" ]; then
        $s "sudo -n sh -c 'mkdir -p $wh && tar -xf - -C $wh --no-same-owner'" <"$tmp/wheels.tar"
    fi
    $s "sudo -n sh -c '$remote' floor $D $rid $unit $hash $wh" <"$tmp/release.tar.gz"
}

pids=""
for h in "$@"; do
    deploy "$h" &
    pids="$pids $!"
done
status=0
for p in $pids; do wait "$p" || status=1; done
exit $status
