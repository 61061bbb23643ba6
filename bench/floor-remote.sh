# The work of the floor on one host, in ONE remote shell (run as root by sudo; the release archive,
# gzipped tar, arrives on stdin). No single quotes in this file: floor.sh passes it in one.
# argv: DEPLOY_TO RELEASE_ID UNIT [VENV_HASH WHEELHOUSE PYTHON]  (the last three for a cold deploy)
set -eu
D=$1 rid=$2 unit=$3 hash=${4:-} wh=${5:-} py=${6:-/usr/bin/python3}
R="$D/releases/$rid"
mkdir -p "$D/releases"
mkdir "$R"
tar -xzf - -C "$R" --no-same-owner
printf "%s\n" "$rid" >"$R/REVISION"
if [ -n "$hash" ]; then
    venv="$D/venvs/$hash"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-index \
        --find-links "$wh" -r "$R/requirements.txt"
else
    venv=$(readlink "$D/current/.venv")
fi
ln -sfn "$venv" "$R/.venv"
ln -sfn "$D/shared/.env" "$R/.env"
for d in media logs; do
    rm -rf "${R:?}/$d"
    ln -sfn "$D/shared/$d" "$R/$d"
done
(cd "$R" && set -a && . ./.env && set +a && ./.venv/bin/python manage.py collectstatic --noinput -v 0)
ln -sfn "releases/$rid" "$D/current.new-$rid"
mv -Tf "$D/current.new-$rid" "$D/current"
/usr/local/sbin/bench-restart-app "$D" "$unit"
i=0
until curl -fsS --max-time 5 http://127.0.0.1/healthz 2>/dev/null | grep -qF "\"$rid\""; do
    i=$((i + 1))
    [ "$i" -lt 300 ] || { echo "health: $rid not served after 30 s" >&2; exit 9; }
    sleep 0.1
done
