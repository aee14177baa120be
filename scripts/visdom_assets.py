"""Put the Visdom web page's scripts, styles and fonts into Visdom's static folder.

pip's Visdom ships only its own main.js; the page also needs jQuery, Bootstrap, React,
Plotly, MathJax, d3 and a few more, which Visdom's own launcher downloads from CDNs on
first start (and fails offline). These are the same files, at the versions Visdom
asks for, fetched with npm from the npm registry. `make` runs this; it does nothing
when the files are there, and only warns when npm cannot fetch them: the sweep and the
Visdom API do not need them, only the page in a browser does.

    .venv/bin/python scripts/visdom_assets.py
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# (npm package, file in its tarball, where Visdom's index.html loads it from static/)
ASSETS = [
    ("jquery@3.1.1", "dist/jquery.min.js", "js/jquery.min.js"),
    ("bootstrap@3.3.7", "dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
    ("bootstrap@3.3.7", "dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
    *[("bootstrap@3.3.7", f"dist/fonts/glyphicons-halflings-regular.{ext}",
       f"fonts/glyphicons-halflings-regular.{ext}")
      for ext in ("eot", "woff2", "woff", "ttf", "svg")],
    ("react@16.2.0", "umd/react.production.min.js", "js/react-react.min.js"),
    ("react-dom@16.2.0", "umd/react-dom.production.min.js", "js/react-dom.min.js"),
    ("react-modal@3.1.10", "dist/react-modal.min.js", "js/react-modal.min.js"),
    ("plotly.js-dist-min@2.11.1", "plotly.min.js", "js/plotly-plotly.min.js"),
    ("sjcl@1.0.7", "sjcl.js", "js/sjcl.js"),
    ("layout-bin-packer@1.4.0", "dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
    ("layout-bin-packer@1.4.0", "dist/layout-bin-packer.js.map",
     "js/layout-bin-packer.js.map"),
    ("d3@3.5.17", "d3.min.js", "js/d3.v3.min.js"),
    ("d3-selection-multi@1.0.1", "build/d3-selection-multi.js", "js/d3-selection-multi.v1.js"),
    ("save-svg-as-png@1.4.17", "lib/saveSvgAsPng.js", "js/saveSvgAsPng.js"),
    ("react-resizable@3.1.3", "css/styles.css", "css/react-resizable-styles.css"),
    ("react-grid-layout@2.2.3", "css/styles.css", "css/react-grid-layout-styles.css"),
    ("mathjax@3.2.2", "es5/tex-mml-svg.js", "js/mathjax/3.2.2/es5/tex-mml-svg.js"),
]


def static_dir() -> Path:
    spec = importlib.util.find_spec("visdom")
    if spec is None or spec.origin is None:
        sys.exit("visdom is not installed in this Python; run make first")
    return Path(spec.origin).parent / "static"


def missing(static: Path) -> list[tuple[str, str, str]]:
    return [asset for asset in ASSETS if not (static / asset[2]).is_file()]


def fetch(static: Path, assets: list[tuple[str, str, str]]) -> None:
    packages = sorted({package for package, _, _ in assets})
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "--silent", "--pack-destination", tmp, *packages],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
        for package, member, target in assets:
            name, version = package.rsplit("@", 1)
            tarball = Path(tmp) / f"{name.replace('/', '-')}-{version}.tgz"
            with tarfile.open(tarball) as archive:
                source = archive.extractfile(f"package/{member}")
                if source is None:
                    raise FileNotFoundError(f"{package} has no {member}")
                path = static / target
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(path.suffix + ".partial")
                partial.write_bytes(source.read())
                partial.replace(path)


def main() -> None:
    static = static_dir()
    todo = missing(static)
    if not todo:
        return
    if shutil.which("npm") is None:
        print("visdom_assets: npm not found, so the Visdom web page will lack its scripts "
              "(sweeps and the Visdom API work without them); install Node.js and npm, "
              "then run make again", file=sys.stderr)
        return
    print(f"fetching the Visdom web page's {len(todo)} scripts, styles and fonts with npm")
    try:
        fetch(static, todo)
    except (subprocess.CalledProcessError, OSError, tarfile.TarError) as err:
        detail = getattr(err, "stderr", None) or str(err)
        print(f"visdom_assets: could not fetch them ({detail.strip().splitlines()[-1]}); "
              "sweeps and the Visdom API work without them; run make again to retry",
              file=sys.stderr)


if __name__ == "__main__":
    main()
