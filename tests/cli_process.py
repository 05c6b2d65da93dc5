"""`imagefit ...` in a real subprocess, as a user runs it: shared by the CLI-level tests."""
import os
import subprocess
import sys


def run_imagefit(*args, cwd, check=True):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "imagefit.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def start_cli(*args, cwd=None):
    """`imagefit ...` started in the background (to interrupt it); stdout and stderr are pipes."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "imagefit.cli", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
