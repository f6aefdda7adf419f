"""The task collection that `fabfile.py` exposes to `fab`."""

import signal

from invoke.collection import Collection

from deploytool.tasks.deploy import deploy, releases, rollback
from deploytool.tasks.inventory import inventory
from deploytool.tasks.sandbox import sandbox
from deploytool.tasks.workers import workers

# Output piped into `head` and the like: end quietly, as Unix tools do, not with a traceback.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)

ns = Collection(deploy, rollback, releases, workers, inventory, sandbox)
