"""The task collection that `fabfile.py` exposes to `fab`."""

from invoke.collection import Collection

from deploytool.tasks.deploy import deploy, releases, rollback
from deploytool.tasks.inventory import inventory
from deploytool.tasks.workers import workers

ns = Collection(deploy, rollback, releases, workers, inventory)
try:
    from deploytool.tasks.sandbox import sandbox
except ImportError:  # pragma: no cover - the sandbox package is optional in a trimmed install
    pass
else:
    ns.add_collection(sandbox)
