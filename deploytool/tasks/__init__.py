"""The task collection that an app's `fabfile.py` exposes to `fab`.

The sandbox tasks (`sandbox.up/down/reboot`, which boot and remove this machine's local fleet) are not in
it: they belong to deploytool's own repository, whose fabfile adds them (deploytool.tasks.sandbox)."""

from invoke.collection import Collection

from deploytool.tasks.check import check
from deploytool.tasks.config import config
from deploytool.tasks.deploy import deploy, releases, rollback
from deploytool.tasks.inventory import inventory
from deploytool.tasks.jobs import jobs
from deploytool.tasks.run import run
from deploytool.tasks.workers import workers

ns = Collection(deploy, rollback, releases, check, run, workers, jobs, inventory, config)
