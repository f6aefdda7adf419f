"""The engine every changing task runs on: a host's plan as data (plan), the plan runner that runs it on
the host (host_runner) and the executor that steers it from here (execute), the one runner that drives
hosts in parallel or rolling batches (runner, rolling, hostwork), and the deploy lock's holder record
(lock). The protocol between the executor and the host's runner is written down in host_runner."""
