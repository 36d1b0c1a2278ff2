"""Stand-alone probe run by the agent's venv Python (else the node's ``python``) over stdin: one JSON line about the node.

Usage: ``python - VENV DATA_PATH WORKDIR < probe_script.py``. Standard library only and Python 3.6
compatible, because it runs under whatever Python JetPack ships (3.6 on a TX2's JetPack 4). It imports
what the agent imports, so a module the venv lacks is named, and measures what that costs: the
resident memory of a process after importing them, and after creating a CUDA context.
"""

import glob
import json
import os
import platform
import subprocess
import sys

MARKER = "LITESRL-PROBE "

# What the agent, the telemetry streamer and the profiler import on the board; then optional extras.
BOARD_MODULES = ("torch", "torchvision", "numpy", "PIL", "nodes.agent", "nodes.agent_main", "nodes.telemetry_main",
                 "nodes.profile_main")
OPTIONAL_MODULES = ("psutil", "tifffile")


def read_text(path):
    """Contents of a small system file, or None when it is absent or unreadable."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def jetpack_version():
    """The nvidia-jetpack meta-package version, when dpkg knows it."""
    try:
        out = subprocess.check_output(["dpkg-query", "--showformat=${Version}", "--show", "nvidia-jetpack"],
                                      stderr=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.decode().strip() or None


def meminfo():
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo."""
    values = {}
    for line in (read_text("/proc/meminfo") or "").splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[name] = int(fields[0]) * 1024
    return values.get("MemTotal"), values.get("MemAvailable", values.get("MemFree"))


def rss_bytes():
    """This process's resident memory, from /proc/self/status."""
    for line in (read_text("/proc/self/status") or "").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def import_errors(names):
    """``{module: "ModuleNotFoundError: No module named 'x'"}`` for each of ``names`` that fails to import."""
    errors = {}
    for name in names:
        try:
            __import__(name)
        except Exception as exc:  # any failure to import is a finding to report, not a crash
            errors[name] = "%s: %s" % (type(exc).__name__, exc)
    return errors


def torch_info():
    """torch version, CUDA availability and device name (creating the CUDA context), or the import error."""
    try:
        import torch
    except Exception as exc:
        return {"torch": None, "torch_error": "%s: %s" % (type(exc).__name__, exc)}
    info = {"torch": torch.__version__, "cuda": False, "cuda_device": None}
    try:
        info["cuda"] = bool(torch.cuda.is_available())
        if info["cuda"]:
            info["cuda_device"] = torch.cuda.get_device_name(0)
            torch.zeros(1, device="cuda")  # the context the agent's first stage creates
    except Exception as exc:
        info["torch_error"] = "CUDA query failed: %s" % exc
    return info


def read_json(path):
    """A small JSON file, or None."""
    text = read_text(path)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def installed_litesrl(venv):
    """Version of litesrl installed in ``venv`` (from its dist-info folder), or None."""
    pattern = os.path.join(os.path.expanduser(venv), "lib", "python*", "site-packages", "litesrl-*.dist-info")
    found = sorted(glob.glob(pattern))
    if not found:
        return None
    return os.path.basename(found[-1])[len("litesrl-"):-len(".dist-info")]


def main():
    venv, data_path, workdir = (sys.argv[1:4] + ["", "", ""])[:3]
    report = {
        "model": read_text("/proc/device-tree/model"),
        "tegra_release": (read_text("/etc/nv_tegra_release") or "").split("\n")[0] or None,
        "jetpack": jetpack_version(),
        "python": platform.python_version(),
        "python_path": sys.executable,
        "machine": platform.machine(),
        "kernel": platform.release(),
    }
    rss_start = rss_bytes()
    report["missing"] = import_errors(BOARD_MODULES)
    report["rss_imports"] = rss_bytes()
    report.update(torch_info())
    report["rss_cuda"] = rss_bytes() if report.get("cuda") else None
    report["rss_start"] = rss_start
    report["optional_missing"] = sorted(import_errors(OPTIONAL_MODULES))
    report["deployed"] = read_json(os.path.join(os.path.expanduser(venv), "litesrl-deploy.json")) if venv else None
    report["mem_total"], report["mem_available"] = meminfo()
    data = os.path.expanduser(data_path) if data_path else ""
    report["data_exists"] = os.path.isdir(data) if data else None
    disk_path = data if data and os.path.isdir(data) else os.path.expanduser(workdir or "~")
    while disk_path and not os.path.exists(disk_path):
        disk_path = os.path.dirname(disk_path)
    stat = os.statvfs(disk_path or "/")
    report["disk_path"] = disk_path or "/"
    report["disk_free"] = stat.f_bavail * stat.f_frsize
    report["litesrl"] = installed_litesrl(venv) if venv else None
    sys.stdout.write(MARKER + json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
