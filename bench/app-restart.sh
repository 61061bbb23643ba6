#!/bin/sh
# Installed by bench on every host as /usr/local/sbin/bench-restart-app: the "restart gunicorn"
# step of the floor, Ansible, Capistrano and pyinfra, after they switched `current`.
#   bench-restart-app DEPLOY_TO UNIT
# A host set up with one gunicorn unit restarts it. A host set up with two app slots (mlctl's
# blue/green cutover; nginx names the live slot's socket in /etc/nginx/mlctl/<project>.upstream.conf)
# points the live slot at the release `current` names and restarts that slot: what a user of
# any of these tools would script on such a host.
set -eu
D=$1 unit=$2
up=/etc/nginx/mlctl/${unit#gunicorn-}.upstream.conf
if [ ! -f "$up" ]; then
    exec systemctl restart "$unit.service"
fi
live=$(sed -n "s|.*unix:/run/$unit-\([a-z]*\)\.sock.*|\1|p" "$up")
[ -n "$live" ] || { echo "bench-restart-app: no live slot in $up" >&2; exit 1; }
rel=$(basename "$(readlink -f "$D/current")")
ln -sfn "../releases/$rel" "$D/slots/$live.new"
mv -Tf "$D/slots/$live.new" "$D/slots/$live"
systemctl restart "$unit@$live.service"
