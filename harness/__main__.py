"""`python -m harness ...`: run the command, then leave without tearing Python down.

When a command returns, every file it wrote is closed. Python's own shutdown would then
free torch's C++ state one object at a time, about 1.4 s after a sweep on a 2-core
machine, for nothing. So: the exit handlers run (logging, multiprocessing, torch), the
output is flushed, and the process ends. If a thread the command started is still
working, Python's normal exit waits for it instead. Output into a pipe whose reader
stopped early (`| head`) ends quietly, as Python's documentation advises.

Ctrl-C and SIGTERM are caught from the first line on (harness.stop), so that one sent
while torch is still loading ends in exit 130 with the message too.
"""

from harness import stop

stop.install()

import atexit  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

from harness.cli import main  # noqa: E402

try:
    code = main()
    sys.stdout.flush()
except BrokenPipeError:  # the reader stopped early (| head): no traceback
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 1
if any(thread is not threading.main_thread() and not thread.daemon
       for thread in threading.enumerate()):
    raise SystemExit(code)
atexit._run_exitfuncs()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
