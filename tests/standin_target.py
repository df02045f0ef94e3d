"""A stand-in Singer target that dies: `python -m tests.standin_target MODE SEED`.

- `stall`: reads a random amount, stops reading for a moment (the tap fills the pipe),
  then exits with bytes still waiting in the pipe.
- `midline`: reads a random amount that ends inside a line, then exits at once.
- `at_state`: reads whole lines up to a random STATE message, then exits at once.
- `hold`: reads a random amount, prints `stalled`, then reads nothing until its stdin
  says otherwise (the test signals the tap meanwhile, then kills this process).
"""

from __future__ import annotations

import os
import random
import sys
import time


def main() -> None:
    mode, seed = sys.argv[1], sys.argv[2]
    rng = random.Random(f"{mode}-{seed}")
    fd = sys.stdin.fileno()
    limit = rng.randrange(8_000, 400_000)
    read = bytearray()
    states = rng.randrange(1, 6)
    while len(read) < limit:
        chunk = os.read(fd, rng.choice([512, 4096, 16384]))
        if not chunk:
            return  # the tap finished first
        read += chunk
        if mode == "at_state" and read.count(b'{"type":"STATE"') >= states:
            return
    if mode == "midline" and read.endswith(b"\n"):
        os.read(fd, 7)
    if mode == "stall":
        time.sleep(rng.uniform(0.1, 0.4))
    if mode == "hold":
        print("stalled", file=sys.stderr, flush=True)
        time.sleep(60)  # killed by the test long before


if __name__ == "__main__":
    main()
