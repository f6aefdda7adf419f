# pyinfra 3 doing what `fab deploy` does to the sample app, for benchmarks/run (which checks the end state
# on every host after every run): a release from the same `git archive` tarball deploytool uploads,
# REVISION, linked_files/linked_dirs, the Sidekiq workers quieted before the switch, `current` switched
# atomically, the unit files deploytool renders written when they differ (then daemon-reload), the units
# enabled, the workers restarted via systemctl, keep_releases, revisions.log.
#
# pyinfra's own operations where they fit (directories, uploads with their checksum check, systemd units);
# shell for the release steps, as a pyinfra user writes a Capistrano-style flow. Input: BENCH_CONFIG (the
# JSON Capistrano reads), BENCH_TARBALL, BENCH_REVISION, BENCH_RELEASE (a UTC %Y%m%d%H%M%S name).
import json
import os
import shlex

from pyinfra import host
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

with open(os.environ["BENCH_CONFIG"]) as f:
    BENCH = json.load(f)
TARBALL = os.environ["BENCH_TARBALL"]
REVISION = os.environ["BENCH_REVISION"]
RELEASE = os.environ["BENCH_RELEASE"]
SPEC = BENCH["hosts"][host.name]
q = shlex.quote

deploy_to = BENCH["deploy_to"]
releases = f"{deploy_to}/releases"
shared = f"{deploy_to}/shared"
release = f"{releases}/{RELEASE}"
archive = f"{releases}/.{RELEASE}.tar.gz"

files.directory(name="Releases dir", path=releases)
for d in BENCH["linked_dirs"]:
    files.directory(name=f"shared/{d}", path=f"{shared}/{d}")
server.shell(name="Every linked file is in shared/",
             commands=[f"test -e {q(shared + '/' + f)}" for f in BENCH["linked_files"]])

files.put(name="Code tarball", src=TARBALL, dest=archive)
server.shell(name="New release from the tarball, REVISION", commands=[
    f"mkdir {q(release)} && tar -xzf {q(archive)} -C {q(release)} && rm -f {q(archive)}",
    f"printf '%s\\n' {q(REVISION)} > {q(release + '/REVISION')}",
])
server.shell(name="Linked dirs and files", commands=[
    *(f"rm -rf {q(release + '/' + d)} && ln -s {q(shared + '/' + d)} {q(release + '/' + d)}"
      for d in BENCH["linked_dirs"]),
    *(f"mkdir -p {q(os.path.dirname(release + '/' + f))} && ln -sfn {q(shared + '/' + f)} {q(release + '/' + f)}"
      for f in BENCH["linked_files"]),
])

server.shell(name="Quiet the Sidekiq workers (SIGTSTP to the main process)", _sudo=True, commands=[
    shlex.join(["systemctl", "kill", "--kill-whom=main", "--signal=SIGTSTP", *SPEC["quiet"]])])
server.shell(name="Switch current atomically", commands=[
    f"ln -sfn {q(release)} {q(deploy_to + '/.current.' + RELEASE)} && "
    f"mv -T {q(deploy_to + '/.current.' + RELEASE)} {q(deploy_to + '/current')}"])

written = [files.put(name=f"Unit {name}", src=path, dest=f"/etc/systemd/system/{name}", mode="644", _sudo=True)
           for name, path in sorted(SPEC["files"].items())]
systemd.daemon_reload(name="daemon-reload if a unit changed", _sudo=True, _if=any_changed(*written))
for unit in [SPEC["target"], *SPEC["units"]]:
    systemd.service(name=f"Enable {unit}", service=unit, running=None, enabled=True, _sudo=True)
for unit in SPEC["units"]:
    systemd.service(name=f"Restart {unit}", service=unit, running=True, restarted=True, _sudo=True)

server.shell(name="Keep keep_releases releases, never current's", commands=[
    f"cd {q(deploy_to)} && cur=$(basename \"$(readlink current)\") && "
    f"ls -1 releases | grep -E '^[0-9]{{14}}$' | sort -r | tail -n +{int(BENCH['keep_releases']) + 1} | "
    "while read -r r; do [ \"$r\" = \"$cur\" ] || rm -rf \"releases/$r\"; done"])
server.shell(name="revisions.log", commands=[
    f"printf '%s\\n' \"$(date -u +%Y-%m-%dT%H:%M:%S+00:00) {REVISION} deployed as release {RELEASE} by pyinfra\" "
    f">> {q(deploy_to + '/revisions.log')}"])
