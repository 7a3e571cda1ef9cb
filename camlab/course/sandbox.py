"""Where a submission's code runs: Debian's ``bubblewrap`` (``bwrap``) sandbox, started by the grader.

Each submission gets a fresh sandbox: its own PID, network, IPC and UTS namespaces (it sees no other process and
has no network, not even the host's loopback), an empty size-limited ``tmpfs`` as ``/tmp`` that is also its HOME,
IPython and Jupyter folder and working folder, and read-only views of only what Python needs: ``/usr``, ``/etc``,
the Python installation, the virtual environment and camlab's package and data folders. The instructor's release,
the other submissions, the course's notebooks (solutions) and the instructor's secret are not in it. The process
has resource limits (address space, CPU seconds, file size, open files, processes), and ``--die-with-parent`` plus
the PID namespace guarantee that every process it started is gone when the grader ends it. Installing bubblewrap:
``apt-get install bubblewrap`` (Debian/Ubuntu).

The kernel counts the process limit per user and never applies it to root. An instructor who is not root runs the
sandbox in a user namespace (their own user id inside it, shown as 1000); the limit is then their processes at the
start plus ``Limits.processes``. A grader running as root (a container, CI) starts bubblewrap without a user
namespace and gives each sandbox a user id of its own, unused on the machine (:func:`free_uid`): the worker drops to
it before any submission code runs (:func:`camlab.course.worker.drop_privileges`), so the limit counts exactly that
sandbox's processes and threads, and a fork bomb in one submission cannot starve another's.

Where ``bwrap`` is missing (or cannot create namespaces), :func:`check_available` refuses with that message; the
grader's ``--no-sandbox`` runs the worker as a plain subprocess instead: fresh HOME/IPython/tmp folders, the same
resource limits and its own process group killed at the end, but it can read the instructor's files and signal
other processes. The verdicts are still decided in the grader's process, so checks cannot be switched off; use it
only to grade trusted notebooks (your own release, a demo)."""
from __future__ import annotations

import functools
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """Per-submission resource limits."""
    memory_bytes: int = 6 << 30       # address space per process (torch maps about 2 GiB at import)
    cpu_seconds: int = 600            # CPU time per process
    file_bytes: int = 64 << 20        # the largest file it may write; also the tmpfs size
    processes: int = 64               # processes and threads (a root grader gives each sandbox its own user)
    open_files: int = 256


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=None)
def check_available() -> str:
    """``bwrap``'s path, after starting one trivial sandbox; raises a RuntimeError saying what is missing."""
    path = bwrap_path()
    if path is None:
        raise RuntimeError("the grader runs each submission in a bubblewrap sandbox, but `bwrap` is not installed: "
                           "`apt-get install bubblewrap` (or grade trusted notebooks only, with --no-sandbox)")
    probe = subprocess.run([path, "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise RuntimeError(f"bubblewrap cannot create a sandbox here ({probe.stderr.strip()[:200]}): enable "
                           "unprivileged user namespaces or run the grader as root")
    return path


def _read_only_roots() -> list[Path]:
    """What the worker needs to import camlab, torch and IPython, and nothing else of the instructor's."""
    import camlab
    from camlab._paths import data_dir

    package = Path(camlab.__file__).resolve().parent
    roots = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent, package]
    try:
        roots.append(data_dir())
    except FileNotFoundError:
        pass
    return sorted({root.resolve() for root in roots if root.exists()}, key=str)


#: the range :func:`free_uid` draws a sandbox's user id from (no account has it; it owns nothing outside the sandbox)
SANDBOX_UIDS = range(1_000_000, 2_000_000)


def _uids_in_use() -> set[int]:
    """The real user ids of the processes running now."""
    uids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/status") as status:
                    uids.update(int(line.split()[1]) for line in status if line.startswith("Uid:"))
            except (OSError, ValueError, IndexError):
                continue
    return uids


def _mapped(uid: int) -> bool:
    """Whether this (possibly namespaced: a container) system can switch to ``uid`` (``/proc/self/uid_map``)."""
    try:
        lines = Path("/proc/self/uid_map").read_text().splitlines()
    except OSError:
        return True
    return any(int(inside) <= uid < int(inside) + int(count) for inside, _, count in (line.split() for line in lines))


def free_uid() -> int:
    """A user id that no account and no running process has: a root grader's sandbox runs as it, so the process
    limit counts that sandbox alone. Drawn at random (parallel graders do not pick the same one) from
    :data:`SANDBOX_UIDS`, or, in a container that maps fewer ids, from the top of what it maps."""
    import pwd

    taken, draw = _uids_in_use() | {entry.pw_uid for entry in pwd.getpwall()}, random.SystemRandom()
    for _ in range(100):
        uid = draw.choice(SANDBOX_UIDS)
        if uid not in taken and _mapped(uid):
            return uid
    for uid in range(65_533, 999, -1):
        if uid not in taken and _mapped(uid):
            return uid
    raise RuntimeError("no free user id to run a sandbox as (the grader runs as root in a container that maps none)")


def _preexec(limits: Limits):
    def apply() -> None:
        os.setsid()
        for kind, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_CPU, limits.cpu_seconds),
                            (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_NOFILE, limits.open_files),
                            (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(kind, (value, value))
        if os.getuid() == 0:  # the worker drops to a user id of its own (free_uid): its processes alone count
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes,) * 2)
        else:  # counted per user: the instructor's own processes plus the sandbox's
            running = sum(1 for entry in os.scandir("/proc") if entry.name.isdigit() and entry.stat().st_uid ==
                          os.getuid())
            resource.setrlimit(resource.RLIMIT_NPROC, (running + limits.processes,) * 2)
    return apply


def bwrap_command(bwrap: str, limits: Limits) -> list[str]:
    """The ``bwrap`` command line that starts the worker (see the module's docstring). As root: no user namespace,
    the worker keeps only CAP_SETUID/CAP_SETGID to drop to ``CAMLAB_SANDBOX_UID`` (:func:`free_uid`) at its start,
    and the sandbox's folders are writable by that user."""
    if os.getuid() == 0:
        command = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                   "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        writable, own_uid = ["--perms", "1777"], {"CAMLAB_SANDBOX_UID": str(free_uid())}
    else:
        command = [bwrap, "--unshare-all", "--uid", "1000", "--gid", "1000"]
        writable, own_uid = [], {}
    command += ["--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
                "--proc", "/proc", "--dev", "/dev"]
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            command += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            command += ["--ro-bind", f"/{name}", f"/{name}"]
    # the empty /tmp first, then the read-only roots: a Python or camlab that lives under /tmp (a CI's fresh
    # virtual environment, a clone in /tmp) is mounted over it instead of being hidden by it
    command += [*writable, "--size", str(limits.file_bytes), "--tmpfs", "/tmp", *writable, "--dir", "/tmp/home",
                *writable, "--dir", "/tmp/work"]
    roots = _read_only_roots()
    if writable:  # as root, bwrap makes the folders above a mount point private (0700): the sandbox's user must pass
        for folder in sorted({parent for root in roots for parent in root.parents}, key=lambda p: len(p.parts)):
            if len(folder.parts) > 1 and folder.parts[1] not in ("usr", "etc", "proc", "dev") and str(folder) != "/tmp":
                command += ["--perms", "0755", "--dir", str(folder)]
    for root in roots:
        command += ["--ro-bind", str(root), str(root)]
    command += ["--chdir", "/tmp/work", "--clearenv"]
    env = {"HOME": "/tmp/home", "TMPDIR": "/tmp", "IPYTHONDIR": "/tmp/home/.ipython", "MPLCONFIGDIR": "/tmp/home",
           "JUPYTER_CONFIG_DIR": "/tmp/home/.jupyter", "JUPYTER_DATA_DIR": "/tmp/home/.jupyter",
           "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "USER": "student",
           "LOGNAME": "student", "PYTHONPATH": _pythonpath(), "PYTHONDONTWRITEBYTECODE": "1",
           "CAMLAB_FAST": os.environ.get("CAMLAB_FAST", ""), **own_uid}
    for key, value in env.items():
        command += ["--setenv", key, value]
    return command + [sys.executable, "-m", "camlab.course.worker"]


def _pythonpath() -> str:
    """The folder holding the ``camlab`` package when it is not installed into the environment (a checkout)."""
    import camlab

    return str(Path(camlab.__file__).resolve().parent.parent)


def start_worker(limits: Limits, sandbox: bool = True) -> subprocess.Popen:
    """Start the worker (in the sandbox, or with ``sandbox=False`` as a plain limited subprocess); its stdin and
    stdout are the protocol pipes. ``stop_worker`` ends it."""
    home = None
    if sandbox:
        command = bwrap_command(check_available(), limits)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        cwd = "/"
    else:
        home = tempfile.mkdtemp(prefix="camlab-grade-")
        command = [sys.executable, "-m", "camlab.course.worker"]
        env = {"HOME": home, "TMPDIR": home, "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": home,
               "JUPYTER_CONFIG_DIR": f"{home}/.jupyter", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "PYTHONPATH": _pythonpath(), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        cwd = home
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               cwd=cwd, env=env, preexec_fn=_preexec(limits), text=True, bufsize=1)
    process.camlab_home = home
    return process


def stop_worker(process: subprocess.Popen) -> None:
    """Kill the worker's whole process group (and so the sandbox with every process in it)."""
    try:
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    if getattr(process, "camlab_home", None):
        shutil.rmtree(process.camlab_home, ignore_errors=True)
