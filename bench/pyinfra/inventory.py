"""pyinfra inventory: the farm's hosts (BENCH_HOSTS, space-separated addresses) as the deploy
user with sudo, host keys checked against the farm's known_hosts (KNOWN_HOSTS)."""

import os

_ssh = {
    "ssh_user": "deploy",
    "ssh_key": os.environ["IDENTITY"],
    "ssh_known_hosts_file": os.environ["KNOWN_HOSTS"],
    "ssh_strict_host_key_checking": "yes",
    "ssh_allow_agent": False,
    "ssh_look_for_keys": False,
    "_sudo": True,
}

app = [(address, dict(_ssh)) for address in os.environ["BENCH_HOSTS"].split()]
