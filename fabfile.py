"""deploytool's own task collection: an app's tasks (deploytool.tasks.ns) plus the sandbox fleet's,
which only this repository offers; `fab --list` shows them."""

from deploytool.tasks import ns
from deploytool.tasks.sandbox import sandbox

ns.add_collection(sandbox)

__all__ = ["ns"]
