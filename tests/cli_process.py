"""`imagefit ...` in a real subprocess, as a user runs it: shared by the CLI-level tests."""
import os
import subprocess
import sys
import time


def run_imagefit(*args, cwd, check=True):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "imagefit.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def start_cli(*args, cwd=None, new_session=False):
    """`imagefit ...` started in the background (to interrupt it); stdout and stderr are pipes. `new_session`:
    its own process group, so that the processes it launches can be killed with it."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "imagefit.cli", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=new_session)


def wait_for(condition, timeout=180):
    """Poll `condition` until it holds (a background run reached a point), or fail after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")
