"""The operations, each as plans for the engine: deploy, rollback and the releases (releases), the worker
operations (workers), the shared files (shared_files) and the read-only readiness check (check)."""
