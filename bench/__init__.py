"""mlctl's benchmark: mlctl side by side with the floor (a plain shell script over one multiplexed
ssh connection per host) and with an Ansible playbook, on a farm of its own (issue 8).

    python -m bench            # full run (~15 min), writes bench/RESULTS.md
    python -m bench --quick    # one repeat of every case, prints the table only

Needs root (the farm boots real Debian hosts in network namespaces). See bench/README.md.
"""
