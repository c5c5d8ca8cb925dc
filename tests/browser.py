"""A real browser for the report's tests: headless Chromium driven by selenium through Debian's chromedriver.

`make install` installs chromium and chromium-driver where apt-get exists (Makefile); where no browser can be
found the tests that need one are skipped with that reason. Nothing is downloaded at run time (no driver manager).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

BROWSERS = ["chromium", "chromium-browser", "google-chrome"]
DRIVERS = ["chromedriver"]


def _which(names: list[str]) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


def browser_available() -> bool:
    try:
        import selenium  # noqa: F401  (deferred: selenium is optional, the dev extra has it)
    except ImportError:
        return False
    return _which(BROWSERS) is not None and _which(DRIVERS) is not None


def start_browser(width: int = 1400, height: int = 1000):
    """A headless Chromium logging the page's console, or a skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra has it)")
    browser, driver = _which(BROWSERS), _which(DRIVERS)
    if browser is None or driver is None:
        pytest.skip("no headless browser: install chromium and chromium-driver (make install does where apt-get "
                    "exists)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service  # deferred: selenium is optional (dev extra)

    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def samples(run_dir: Path, gen_key: str) -> dict[str, str]:
    """prompt id -> the first cached response of that point (what the explorer shows), read here on its own (the
    file's last line names its key and row count, and is no sample)."""
    out: dict[str, str] = {}
    *rows, end = [json.loads(line) for line in (run_dir / "sweep" / "samples" / f"{gen_key}.jsonl").read_text()
                  .splitlines() if line]
    assert end == {"end_of_samples": gen_key, "rows": len(rows)}
    for row in rows:
        out.setdefault(row["prompt_id"], row["response"])
    return out


def check_report(driver, run_dir: Path) -> None:
    """Open run_dir's report.html and check it as a reader uses it: no console error; the overview has a trace per
    front plus θ0 and the single policies, and one panel per comparison; a legend click hides a front; picking a
    weight (slider, then a click on a point) shows that weight's cached generations of every front."""
    from selenium.webdriver.common.by import By  # deferred: selenium is optional (dev extra)
    from selenium.webdriver.support.wait import WebDriverWait

    from pipelines.report.data import load_run

    data = load_run(run_dir)
    fronts = data.fronts()
    driver.get((run_dir / "report" / "report.html").resolve().as_uri())
    assert driver.execute_script("return typeof Plotly") == "object"  # embedded: no network was reachable or used
    names = driver.execute_script("return document.getElementById('fronts-overview').data.map(t => t.name)")
    assert names == list(fronts) + list(data.references())
    panels = driver.execute_script("return document.getElementById('fronts-comparisons').layout.annotations"
                                   ".map(a => a.text)")
    assert panels == [f"{a} vs {b}" for a, b in data.comparisons()]
    # Hide the first front from the legend: its trace becomes legend-only, the others stay drawn.
    # (plotly applies a single click once its double-click delay has passed: wait for it.)
    driver.find_elements(By.CSS_SELECTOR, "#fronts-overview .legend .legendtoggle")[0].click()
    visibility = "return document.getElementById('fronts-overview').data.map(t => t.visible)"
    WebDriverWait(driver, 5).until(lambda d: d.execute_script(visibility)[0] == "legendonly")
    assert all(v in (None, True) for v in driver.execute_script(visibility)[1:])
    # Pick a weight with the slider: every front's column shows its point's first generation for each prompt.
    weights = sorted({tuple(p["weights"]) for pts in fronts.values() for p in pts}, key=lambda w: (-w[0], w))
    index = len(weights) - 1
    driver.execute_script("const s = document.getElementById('weight-slider'); s.value = arguments[0];"
                          "s.dispatchEvent(new Event('input'))", index)
    _check_generations(driver, run_dir, fronts, weights[index])
    # Click a point of the first front (the overview's first trace at another weight): the explorer follows.
    driver.execute_script("const gd = document.getElementById('fronts-overview');"
                          "gd.emit('plotly_click', {points: [{customdata: 0, curveNumber: 1}]})")
    _check_generations(driver, run_dir, fronts, weights[0])
    # Untick every front but the first two: only their columns remain, with the same generations.
    for name in list(fronts)[2:]:
        driver.find_element(By.CSS_SELECTOR, f"#generations-columns input[data-column='{name}']").click()
    shown = {name: fronts[name] for name in list(fronts)[:2]}
    _check_generations(driver, run_dir, shown, weights[0])
    errors = console_errors(driver)
    assert not errors, errors


def _check_generations(driver, run_dir: Path, fronts: dict, weights: tuple) -> None:
    from selenium.webdriver.common.by import By  # deferred: selenium is optional (dev extra)

    label = "/".join(f"{w:g}" for w in weights)
    box = driver.find_element(By.ID, "generations")
    assert box.get_attribute("data-weight") == label
    heads = [th.text for th in box.find_elements(By.CSS_SELECTOR, "thead th")]
    assert [h for h in heads if h.endswith(f" at {label}")] == [f"{name} at {label}" for name in fronts]
    assert heads[1:1 + len(fronts)] == [f"{name} at {label}" for name in fronts]
    rows = box.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert rows
    for column, (name, pts) in enumerate(fronts.items(), start=1):
        point = next(p for p in pts if tuple(p["weights"]) == weights)
        expected = samples(run_dir, point["gen_key"])
        for row in rows[:3]:
            shown = row.find_elements(By.CSS_SELECTOR, "td")[column].find_element(By.CSS_SELECTOR, ".response")
            assert shown.get_attribute("textContent") == expected[row.get_attribute("data-prompt")]
