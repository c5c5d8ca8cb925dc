"""Screenshots of a finished run's report.html in headless Chromium (Debian's chromium and chromedriver, selenium):
the fronts (overview and one panel per comparison), and the generations explorer at a picked weight.

    python benchmarks/report_screenshot.py runs/demo --out benchmarks/demo_report --columns soup,lines,θ0

writes <out>_fronts.png and <out>_generations.png. The report is read as it is (`lines report` rebuilds it first if
the code changed); nothing is computed.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def browser(width: int, height: int):
    from selenium import webdriver  # deferred: selenium is optional (the dev extra has it)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}"]:
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", required=True, help="path prefix of the two PNGs")
    parser.add_argument("--weight", type=int, default=None, help="index of the weight the explorer shows")
    parser.add_argument("--columns", default=None,
                        help="comma-separated columns the explorer keeps (fronts, θ0, policies); default: all")
    args = parser.parse_args(argv)
    page = (Path(args.run_dir) / "report" / "report.html").resolve().as_uri()
    driver = browser(1300, 1500)
    try:
        driver.get(page)
        driver.execute_script("document.getElementById('fronts-overview').scrollIntoView()")
        time.sleep(1)
        driver.save_screenshot(f"{args.out}_fronts.png")
        if args.weight is not None:
            driver.execute_script("const s = document.getElementById('weight-slider'); s.value = arguments[0];"
                                  "s.dispatchEvent(new Event('input'))", args.weight)
        if args.columns is not None:
            driver.execute_script("const keep = arguments[0];"
                                  "document.querySelectorAll('#generations-columns input').forEach(box => {"
                                  "if (!keep.includes(box.dataset.column)) box.click(); })",
                                  args.columns.split(","))
        driver.execute_script("document.getElementById('explorer').previousElementSibling.previousElementSibling"
                              ".scrollIntoView()")
        time.sleep(0.5)
        driver.save_screenshot(f"{args.out}_generations.png")
    finally:
        driver.quit()
    print(f"written: {args.out}_fronts.png, {args.out}_generations.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
