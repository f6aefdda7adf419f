"""deploytool's tasks for this project; `fab --list` shows them, README of deploytool explains them."""

from deploytool.tasks import ns

__all__ = ["ns"]
