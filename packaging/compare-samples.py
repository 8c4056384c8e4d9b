#!/usr/bin/env python3
"""Compares two `nodewarden-agent sample --json` outputs for one fixture tree.

The arm agents (under qemu) must read a board's fixture tree exactly as the
amd64 agent does; only fields that depend on when the sample was taken may
differ. Usage: compare-samples.py ARM.json HOST.json
"""

import json
import sys

# Fields about when or how long, not what: they differ between two runs.
VOLATILE = ("time", "timestamp", "at", "uptime", "elapsed", "duration")
# statvfs of the real root filesystem, not of the fixture tree: its free
# bytes change whenever anything on the machine writes between the two runs.
LIVE_HOST = ("root_filesystem",)


def strip(value):
    if isinstance(value, dict):
        return {
            k: strip(v)
            for k, v in value.items()
            if k not in LIVE_HOST
            and not any(k == w or k.endswith("_" + w) or k.startswith(w + "_") for w in VOLATILE)
        }
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def main() -> int:
    try:
        with open(sys.argv[1]) as a, open(sys.argv[2]) as b:
            arm, host = strip(json.load(a)), strip(json.load(b))
    except (OSError, ValueError, IndexError) as e:
        print(f"compare-samples: {e}", file=sys.stderr)
        return 2
    if arm != host:
        print("arm:  " + json.dumps(arm, sort_keys=True))
        print("host: " + json.dumps(host, sort_keys=True))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
