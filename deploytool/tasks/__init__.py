"""The task collection that `fabfile.py` exposes to `fab`."""

from invoke.collection import Collection

from deploytool.tasks.check import check
from deploytool.tasks.config import config
from deploytool.tasks.deploy import deploy, releases, rollback
from deploytool.tasks.inventory import inventory
from deploytool.tasks.jobs import jobs
from deploytool.tasks.run import run
from deploytool.tasks.sandbox import sandbox
from deploytool.tasks.workers import workers

ns = Collection(deploy, rollback, releases, check, run, workers, jobs, inventory, config, sandbox)
