"""Shared by the readiness probes (ready_*.py): sent to the host ahead of the probe's own source
(deploytool.jobs.systems.System.ready_source). A probe's `check` asks its system again and again in
one interpreter, for up to SPEC's `within` seconds: on a busy host, starting Python and importing a worker
system's library costs more than the question itself, and the answer is seen a moment after it holds,
not on the next second's new interpreter."""

import time

POLL_SECONDS = 0.2


def polled(ask, within):
    """Calls ask() -> (ready, message) until it says ready or `within` seconds passed (0: once); prints
    the last message, returns the exit status (0 ready). An error while asking counts as not ready yet
    (a broker restarting, a worker registering): its message is the answer if it is the last."""
    deadline = time.monotonic() + within
    while True:
        try:
            ready, message = ask()
        except Exception as e:  # any failure to read is "not ready", said by name
            ready, message = False, f"{type(e).__name__}: {e}"
        if ready or time.monotonic() + POLL_SECONDS > deadline:
            print(message)
            return 0 if ready else 1
        time.sleep(POLL_SECONDS)
