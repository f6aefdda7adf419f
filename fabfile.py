"""deploytool's task collection; `fab --list` shows what it offers."""

from deploytool.tasks import ns

__all__ = ["ns"]
