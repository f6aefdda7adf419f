"""`fab jobs.status`: each worker system's own view of its queues and workers, read through the hosts.

Modules: model (what a reading holds), systems (the table of systems and their probes), probe (the
command that runs a probe on a host, and its parsed output), expected (workers the inventory expects),
collect (readings per app, through one host each), thresholds (the exit-1 gate and its state file),
formats (table, JSON, Prometheus textfile), ownership (workers and queues of other apps in an app's
Redis DB, refused before a deploy). probes/ holds the programs sent to the hosts.
"""
