"""Confine this process, then exec the program: `python -I confine.py LIMITS_JSON -- python program.py`.

Run as a separate interpreter (stdlib only, never imported by starbuild) so that no thread of the
evaluating process is ever forked into a sandbox. In order: as root, new network and
mount namespaces with fresh tmpfs over every world-writable directory, then a dedicated uid; else a
network namespace inside a new user namespace where the kernel allows one; then the resource
limits; then exec. The first line on stderr says which protections hold, for the parent to record.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
# Where any user may write; each gets an empty private tmpfs, so nothing written there outlives the run.
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")

libc = ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> bool:
    return libc.unshare(flags) == 0


def _mount_tmpfs(target: str, size_mb: int) -> bool:
    options = f"size={size_mb}m,mode=1777".encode()
    return libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) == 0


def _private_mounts(size_mb: int, workdir: str) -> list[str]:
    """Make every mount private to this namespace and hide the world-writable directories under empty
    tmpfs, all but the program's own directory (the cwd), which is bound back at its path."""
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return []
    own = os.open(".", os.O_PATH)
    hidden = [path for path in WORLD_WRITABLE if os.path.isdir(path) and _mount_tmpfs(path, size_mb)]
    os.makedirs(workdir, exist_ok=True)
    if libc.mount(f"/proc/self/fd/{own}".encode(), workdir.encode(), None, MS_BIND, None) != 0:
        raise OSError(ctypes.get_errno(), f"cannot bind {workdir} back into the private /tmp")
    os.close(own)
    os.chdir(workdir)
    return hidden


def _write_map(path: str, line: str) -> None:
    with open(path, "w") as handle:
        handle.write(line)


def confine(limits: dict[str, int]) -> list[str]:
    """Apply every protection the machine allows; return their names."""
    # The parent started this process in a session of its own and passed a clean environment.
    active = ["session", "clean_env", "fresh_dir"]
    if os.geteuid() == 0:
        if _unshare(CLONE_NEWNET | CLONE_NEWNS):
            active.append("net_namespace")
            hidden = _private_mounts(limits["file_mb"], os.getcwd())
            if hidden:
                active.append("private_tmp")
        uid = limits["uid"]
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        active.append("own_uid")
    else:
        uid, gid = os.getuid(), os.getgid()
        if _unshare(CLONE_NEWUSER | CLONE_NEWNET):
            # Map ourselves to ourselves, so files keep their owner and nothing gains a privilege.
            _write_map("/proc/self/setgroups", "deny")
            _write_map("/proc/self/uid_map", f"{uid} {uid} 1")
            _write_map("/proc/self/gid_map", f"{gid} {gid} 1")
            active.append("net_namespace")
    memory = limits["memory_mb"] << 20
    for name, soft, hard in (
        ("RLIMIT_CPU", limits["cpu_s"], limits["cpu_s"] + 1),
        ("RLIMIT_AS", memory, memory),
        ("RLIMIT_FSIZE", limits["file_mb"] << 20, limits["file_mb"] << 20),
        ("RLIMIT_NPROC", limits["processes"], limits["processes"]),
        ("RLIMIT_NOFILE", 256, 256),
        ("RLIMIT_CORE", 0, 0),
    ):
        resource.setrlimit(getattr(resource, name), (soft, hard))
    active.append("rlimits")
    return active


def main() -> None:
    limits = json.loads(sys.argv[1])
    command = sys.argv[sys.argv.index("--") + 1 :]
    active = confine(limits)
    sys.stderr.write("confined: " + " ".join(active) + "\n")
    sys.stderr.flush()
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
