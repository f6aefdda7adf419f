"""The task collection that `fabfile.py` exposes to `fab`."""

from invoke.collection import Collection

from deploytool.tasks.deploy import deploy, releases, rollback
from deploytool.tasks.inventory import inventory
from deploytool.tasks.jobs import jobs
from deploytool.tasks.sandbox import sandbox
from deploytool.tasks.workers import workers

ns = Collection(deploy, rollback, releases, workers, jobs, inventory, sandbox)
