# The bench hosts of this run (benchmarks/run writes BENCH_CONFIG, the file Capistrano reads too), with
# the same key and known_hosts as deploytool, host keys checked strictly.
import json
import os

with open(os.environ["BENCH_CONFIG"]) as f:
    BENCH = json.load(f)

app = [
    (name, {
        "ssh_hostname": spec["address"],
        "ssh_user": BENCH["user"],
        "ssh_key": BENCH["identity"],
        "ssh_known_hosts_file": BENCH["known_hosts"],
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
    })
    for name, spec in BENCH["hosts"].items()
]
