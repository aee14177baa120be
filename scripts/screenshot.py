"""Screenshot a page of a sweep in headless Chromium (Debian's chromium package).

    .venv/bin/python scripts/screenshot.py tensorboard results/quickstart out.png [--tab hparams]
    .venv/bin/python scripts/screenshot.py file results/quickstart/report.html out.png
    .venv/bin/python scripts/screenshot.py url http://127.0.0.1:8097/env/quickstart out.png

`tensorboard` starts TensorBoard on <results>/tb on a free loopback port and captures a
dashboard tab; `file` captures a local HTML file; `url` a page that is already served
(a Visdom environment, say). Used to check what users will see.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def capture(url: str, out: Path, size: str, wait_ms: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                        f"--window-size={size}", f"--virtual-time-budget={wait_ms}",
                        f"--screenshot={out.resolve()}", url],
                       check=True, capture_output=True, timeout=120)


def tensorboard(results: Path, out: Path, tab: str, size: str) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir",
                               str(results / "tb"), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/data/runs", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        capture(f"{url}/?darkMode=false#{tab}", out, size, 20000)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["tensorboard", "file", "url"])
    parser.add_argument("source", help="results directory, HTML file or URL")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--tab", default="hparams", help="TensorBoard dashboard")
    parser.add_argument("--size", default="1600,1000", help="window width,height")
    args = parser.parse_args()
    if args.kind == "tensorboard":
        tensorboard(Path(args.source), args.out, args.tab, args.size)
    elif args.kind == "url":
        capture(args.source, args.out, args.size, 15000)
    else:
        capture(Path(args.source).resolve().as_uri(), args.out, args.size, 5000)
    print(args.out)


if __name__ == "__main__":
    main()
