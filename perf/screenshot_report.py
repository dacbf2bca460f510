"""Screenshot a report's HTML page in headless Chromium, to check by eye that it renders
(tables, embedded plots) with no network: `python perf/screenshot_report.py RUN_DIR OUT.png`.

Renders the folder first when it has a report.json but no report.html. Needs a `chromium`
(Debian: `apt-get install -y chromium`) or `chromium-browser` / `google-chrome` on PATH.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from experiments.report import ReportError, render_all  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Everything that could reach the network or write profile state is switched off: the page
# is self-contained, and a screenshot must not depend on the machine's browser profile.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


def screenshot(run_dir: Path, out: Path, width: int = 1600, height: int = 4000) -> None:
    page = run_dir / "report.html"
    if not page.is_file():
        render_all(run_dir)
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if browser is None:
        raise SystemExit("No Chromium found; install it with `apt-get install -y chromium`.")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [browser, *FLAGS, f"--screenshot={out.resolve()}", f"--window-size={width},{height}",
               page.resolve().as_uri()]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if finished.returncode != 0 or not out.is_file():
        raise SystemExit(f"Chromium failed ({finished.returncode}): {finished.stderr.strip()[-500:]}")


def main(arguments: list[str]) -> None:
    if len(arguments) != 2:
        raise SystemExit("usage: python perf/screenshot_report.py RUN_DIR OUT.png")
    run_dir, out = Path(arguments[0]), Path(arguments[1])
    try:
        screenshot(run_dir, out)
    except ReportError as error:
        raise SystemExit(f"Error: {error}") from None
    print(f"{out} ({out.stat().st_size:,} bytes) from {run_dir / 'report.html'}")


if __name__ == "__main__":
    main(sys.argv[1:])
