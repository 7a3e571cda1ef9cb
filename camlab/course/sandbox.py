"""Where a submission's code runs: Debian's ``bubblewrap`` (``bwrap``) sandbox, started by the grader.

Each submission gets a fresh sandbox: its own PID, network, IPC and UTS namespaces (it sees no other process and
has no network, not even the host's loopback), an empty size-limited ``tmpfs`` as ``/tmp`` that is also its HOME,
IPython and Jupyter folder and working folder, and read-only views of only what Python needs: ``/usr``, ``/etc``,
the Python installation, the virtual environment and camlab's package and data folders. The instructor's release,
the other submissions, the course's notebooks (solutions) and the instructor's secret are not in it. The process
has resource limits (address space, CPU seconds, file size, open files, and processes where the kernel applies
them: it exempts root), and ``--die-with-parent`` plus the PID namespace guarantee that every process it started
is gone when the grader ends it. Installing bubblewrap: ``apt-get install bubblewrap`` (Debian/Ubuntu).

Where ``bwrap`` is missing (or cannot create namespaces), :func:`check_available` refuses with that message; the
grader's ``--no-sandbox`` runs the worker as a plain subprocess instead: fresh HOME/IPython/tmp folders, the same
resource limits and its own process group killed at the end, but it can read the instructor's files and signal
other processes. The verdicts are still decided in the grader's process, so checks cannot be switched off; use it
only to grade trusted notebooks (your own release, a demo)."""
from __future__ import annotations

import functools
import os
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
    processes: int = 64               # processes (not enforced by the kernel for root)
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


def _preexec(limits: Limits):
    def apply() -> None:
        os.setsid()
        for kind, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_CPU, limits.cpu_seconds),
                            (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_NOFILE, limits.open_files),
                            (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(kind, (value, value))
        if os.getuid() != 0:  # counted per user: the instructor's own processes plus the sandbox's
            running = sum(1 for entry in os.scandir("/proc") if entry.name.isdigit() and entry.stat().st_uid ==
                          os.getuid())
            resource.setrlimit(resource.RLIMIT_NPROC, (running + limits.processes,) * 2)
    return apply


def bwrap_command(bwrap: str, limits: Limits) -> list[str]:
    """The ``bwrap`` command line that starts the worker (see the module's docstring)."""
    command = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--uid", "1000", "--gid", "1000",
               "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev"]
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            command += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            command += ["--ro-bind", f"/{name}", f"/{name}"]
    # the empty /tmp first, then the read-only roots: a Python or camlab that lives under /tmp (a CI's fresh
    # virtual environment, a clone in /tmp) is mounted over it instead of being hidden by it
    command += ["--size", str(limits.file_bytes), "--tmpfs", "/tmp", "--dir", "/tmp/home", "--dir", "/tmp/work"]
    for root in _read_only_roots():
        command += ["--ro-bind", str(root), str(root)]
    command += ["--chdir", "/tmp/work", "--clearenv"]
    env = {"HOME": "/tmp/home", "TMPDIR": "/tmp", "IPYTHONDIR": "/tmp/home/.ipython", "MPLCONFIGDIR": "/tmp/home",
           "JUPYTER_CONFIG_DIR": "/tmp/home/.jupyter", "JUPYTER_DATA_DIR": "/tmp/home/.jupyter",
           "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": _pythonpath(), "PYTHONDONTWRITEBYTECODE": "1", "CAMLAB_FAST": os.environ.get("CAMLAB_FAST",
                                                                                                       "")}
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
