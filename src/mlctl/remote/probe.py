# Every fact about a host for `check`, `diag`, `status` and `monitor` in ONE run: read by
# `python3 -` from stdin (commands/probes.program() sends it with the modules it needs in front:
# hostfiles, envfile, logtime, probe_base, probe_system, probe_app, probe_tls). argv: CONFIG_JSON.
# Run as root on servers, so it can read unit states, `nginx -t`, the .env's mode and switch to
# the app user for the Django probe. Prints {"section": {...facts, "ms": duration}, ...}, with
# every secret value of the shared .env masked; mlctl judges the facts locally (tasks/judges.py).
import concurrent.futures
import json
import os
import sys
import time

if __package__:  # imported by mlctl; on a host these modules are sent in front
    from mlctl.remote.envfile import secret_values
    from mlctl.remote.hostfiles import read
    from mlctl.remote.probe_app import (
        app_log,
        django_probe,
        gunicorn,
        history,
        lock,
        permissions,
        pip_check,
        processes,
        release,
        site,
    )
    from mlctl.remote.probe_base import CFG, path, timed
    from mlctl.remote.probe_system import (
        disk,
        env_file,
        failed_units,
        host_python,
        load,
        maintenance,
        memory,
        nginx,
        nginx_logs,
        tls,
    )
    from mlctl.remote.probe_tls import served_tls

BASE = {
    "check": [disk, memory, load, host_python, release, lock],
    "diag": [disk, memory, host_python, release, history, lock, gunicorn],
    "status": [release, site],
    "monitor": [disk, memory, release, site],
}


def masked(obj, secrets):
    # The .env holds secrets mlctl may not know; none of them may leave the host.
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, "********")
        return obj
    if isinstance(obj, dict):
        return {k: masked(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [masked(v, secrets) for v in obj]
    return obj


def env_values():
    # Shorter values are not masked: "1234" would star out every count in the facts.
    return secret_values(read(path("shared", ".env"), ""), shortest=4)


def plan(mode, remote, rel, tls_cert, served=False):
    """The probes of `mode`: on a server (`remote`), with a release (`rel`), a certificate file
    (`tls_cert`) and a site served over HTTPS (`served`)."""
    probes = list(BASE[mode])
    if mode == "check":
        probes += [gunicorn, site]
        if rel:
            probes += [pip_check, django_probe, app_log]
        if remote:
            probes += [nginx, env_file, nginx_logs] + ([permissions] if rel else [])
        if tls_cert:
            probes.append(tls)
    if mode in ("check", "monitor") and served:
        probes.append(served_tls)
    if mode == "diag":
        probes += ([django_probe] if rel else []) + ([nginx] if remote else [])
    if mode == "monitor" and remote:
        probes += [failed_units, nginx_logs]
    if CFG.get("processes") and remote:
        probes.append(processes)
    return probes + ([maintenance] if remote else [])


def gather(probes):
    # The app's log is read last: the site's requests just made may be what it has to tell.
    late = [fn for fn in probes if fn is app_log]
    early = [fn for fn in probes if fn is not app_log]
    with concurrent.futures.ThreadPoolExecutor(len(early)) as pool:
        futures = {fn.__name__: pool.submit(timed, fn) for fn in early}
    facts = {name: f.result() for name, f in futures.items()}
    facts.update({fn.__name__: timed(fn) for fn in late})
    facts["time"] = time.time()
    return facts


def main():
    CFG.clear()
    CFG.update(json.loads(sys.argv[1]))
    rel = os.path.isdir(path("current"))
    served = bool(CFG.get("served_tls"))
    facts = gather(plan(CFG["mode"], not CFG["local"], rel, CFG["tls_cert"], served))
    print(json.dumps(masked(facts, env_values())))


if __name__ == "__main__":
    main()
