"""Fetches one registered model in its own process, for the two-processes test of pretrained.fetch.

Usage: ``python fetch_worker.py JSON`` with JSON fields ``name``, ``spec``, ``filename``,
``sha256``, ``url`` (the entry to register), ``barrier`` (a folder) and ``count``. Each worker
writes a file into ``barrier`` and waits until ``count`` files are there, so that all of them call
``fetch`` at the same moment; it then prints the folder ``fetch`` returned.
"""

import json
import os
import sys
import time

from edsr_jax.interop import pretrained, published

# Longest wait for the other workers at the barrier.
BARRIER_TIMEOUT_S = 120


def main() -> None:
    job = json.loads(sys.argv[1])
    weights = published.WeightsFile(job["filename"], job["sha256"], (job["url"],))
    entry = published.Pretrained(job["name"], job["spec"], 0, (weights,), {})
    open(os.path.join(job["barrier"], str(os.getpid())), "w").close()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(os.listdir(job["barrier"])) < job["count"]:
        if time.monotonic() > deadline:
            raise SystemExit("the other workers did not arrive")
        time.sleep(0.01)
    with published.registered(entry):
        print(pretrained.fetch(job["name"], progress=False))


if __name__ == "__main__":
    main()
