#!/usr/bin/env python3
"""Sample process arguments while a command runs (the secure scenario's -vvv deploy).

    process_sampler.py SAMPLES CONTAINER -- COMMAND...

Runs COMMAND; until it ends, every two seconds appends to SAMPLES the arguments of every process of
this machine and of the Docker container CONTAINER (the VM), and the content of the VM's
world-readable temporary files (under /root/.ansible, /tmp, /var/tmp; below 5 MiB each).
Exits with COMMAND's code. The caller greps SAMPLES for the secrets.

Each sample reads /proc in one process on each side (one `docker exec` of the VM's python3), where a
shell loop forked a `tr` per process: on a loaded 2-core machine that loop took a core of its own.
"""

from __future__ import annotations

import glob
import subprocess
import sys
import time

INTERVAL = 2.0

# Run in the VM by its own python3: the same reading, and the temporary files.
IN_VM = r"""
import glob, os, stat
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        print(open(path, "rb").read().replace(b"\0", b" ").decode(errors="replace"))
    except OSError:
        pass
for top in ("/root/.ansible", "/tmp", "/var/tmp"):
    for folder, _, files in os.walk(top):
        for name in files:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode) and info.st_mode & stat.S_IROTH and info.st_size < 5 << 20:
                    print(open(path, "rb").read().decode(errors="replace"))
            except OSError:
                pass
"""


def local_arguments() -> str:
    lines = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as handle:
                lines.append(handle.read().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return "\n".join(lines) + "\n"


def main() -> int:
    samples, container, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    with open(samples, "w", encoding="utf-8") as out:
        child = subprocess.Popen(command)  # noqa: S603 - the test's own command
        while child.poll() is None:
            out.write(local_arguments())
            vm = subprocess.run(["docker", "exec", container, "python3", "-c", IN_VM],  # noqa: S603, S607
                                capture_output=True, text=True, errors="replace", check=False)
            out.write(vm.stdout)
            out.flush()
            time.sleep(INTERVAL)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
