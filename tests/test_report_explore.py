"""report.html as a reader explores it: interactive fronts, the generations behind every point, sortable tables, all in
one self-contained page; checked in the page's source here and in a real browser (headless Chromium)."""
import json
import re

import pytest

from browser import check_report, console_errors, start_browser
from pipelines.report import build_report
from pipelines.report.data import load_run
from pipelines.report.explore import generations, json_for_script
from report_fixtures import HOSTILE, write_tiny_run


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    run = write_tiny_run(tmp_path_factory.mktemp("report"))
    build_report(run)
    return run


def test_page_embeds_plotly_and_reads_offline(tiny_report):
    page = (tiny_report / "report" / "report.html").read_text()
    from plotly.offline import get_plotlyjs  # deferred: plotly is the report's optional dependency (pipeline extra)

    bundle = get_plotlyjs()
    assert page.count(bundle) == 1  # plotly.js itself, once
    rest = page.replace(bundle, "")
    assert not re.search(r"<script[^>]*\bsrc=", rest) and "cdn.plot.ly" not in rest  # nothing fetched
    assert page.count("Plotly.newPlot") >= 3 and "fronts-overview" in page and "fronts-comparisons" in page
    # report.md keeps its static figure; the page has the interactive one in its place.
    assert "![pareto](pareto.png)" in (tiny_report / "report" / "report.md").read_text()
    assert 'alt="pareto"' not in page


def test_generated_text_only_travels_escaped(tiny_report):
    page = (tiny_report / "report" / "report.html").read_text()
    assert "<img src=x" not in page and "</script><img" not in page and "<b>bold</b>" not in page
    data = re.search(r"<script type='application/json' id='generations-data'>(.*?)</script>", page, re.S).group(1)
    assert "<" not in data and ">" not in data and "&" not in data
    assert json.loads(data) == generations(load_run(tiny_report))
    assert json.loads(json_for_script({"a": "</script>\u2028&"})) == {"a": "</script>\u2028&"}


def test_generations_are_the_cached_samples_with_their_prompt_rewards(tiny_report):
    data = load_run(tiny_report)
    explored = generations(data)
    assert explored["weights"] == ["1/0", "0.5/0.5", "0/1"] and explored["fronts"] == list(data.fronts())
    lines = next(p for p in data.fronts()["lines"] if p["weights"] == [0.5, 0.5])
    cell = explored["columns"]["lines"]["1"]["test-0001"]
    assert cell["response"] == HOSTILE
    assert cell["rewards"] == {r: lines["objectives"][r]["per_prompt"][1] for r in data.rewards}
    assert set(explored["references"]) == {"θ0", "policy: positive", "policy: long"}


def test_rebuilding_computes_nothing_new(tiny_report):
    before = (tiny_report / "report" / "points.csv").read_bytes()
    page = (tiny_report / "report" / "report.html").read_text()
    build_report(tiny_report)
    assert (tiny_report / "report" / "points.csv").read_bytes() == before
    assert (tiny_report / "report" / "report.html").read_text() == page


@pytest.mark.slow  # starts headless Chromium and loads plotly.js (several seconds)
def test_report_in_a_real_browser(tiny_report):
    from selenium.webdriver.common.by import By  # deferred: selenium is optional (dev extra)

    driver = start_browser()
    try:
        check_report(driver, tiny_report)
        # Hostile generations are text: nothing ran, no element was made from them.
        assert driver.title == "report"
        assert not driver.find_elements(By.CSS_SELECTOR, "#generations img, #generations b")
        assert HOSTILE in driver.find_element(By.ID, "generations").get_attribute("textContent")
        # The points table: filtered by front, sorted by a column.
        select = driver.find_element(By.ID, "front-filter")
        select.find_element(By.CSS_SELECTOR, "option[value='soup']").click()
        rows = [r for r in driver.find_elements(By.CSS_SELECTOR, "#points-table tbody tr") if r.is_displayed()]
        assert len(rows) == 3 and {r.find_element(By.CSS_SELECTOR, "td").text for r in rows} == {"soup"}
        heads = driver.find_elements(By.CSS_SELECTOR, "#points-table th")
        column = [th.get_attribute("textContent") for th in heads].index("positive_mean")
        header = heads[column]
        header.click()
        values = [float(r.find_elements(By.CSS_SELECTOR, "td")[column].get_attribute("textContent"))
                  for r in driver.find_elements(By.CSS_SELECTOR, "#points-table tbody tr")]
        assert values == sorted(values)
        # Standard errors and counts are hidden until asked for.
        stderr = next(th for th in driver.find_elements(By.CSS_SELECTOR, "#points-table th")
                      if th.get_attribute("textContent") == "positive_stderr")
        assert not stderr.is_displayed()
        driver.find_element(By.ID, "points-detail").click()
        assert stderr.is_displayed()
        assert not console_errors(driver)
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from pipelines.report.study import build_study_report

    root = tmp_path_factory.mktemp("study")
    seeds = {s: write_tiny_run(root, seed=s, name=f"tiny_seed{s}") for s in (0, 1, 2)}
    return build_study_report(root / "study", seeds)


def test_study_page_has_the_interactive_forest_plot(tiny_study):
    page = (tiny_study / "report.html").read_text()
    assert "study-forest" in page and 'alt="pooled differences"' not in page
    assert "![pooled differences](forest.png)" in (tiny_study / "report.md").read_text()


@pytest.mark.slow  # starts headless Chromium and loads plotly.js (several seconds)
def test_study_forest_plot_in_a_real_browser(tiny_study):
    from selenium.webdriver.common.by import By  # deferred: selenium is optional (dev extra)
    from selenium.webdriver.support.wait import WebDriverWait

    pooled = json.loads((tiny_study / "pooled.json").read_text())
    driver = start_browser()
    try:
        driver.get((tiny_study / "report.html").as_uri())
        traces = driver.execute_script("return document.getElementById('study-forest').data"
                                       ".map(t => [t.name, t.x])")
        per_panel = 1 + len(pooled["seeds"])
        assert len(traces) == per_panel * 2  # the hypervolume and the one closeness metric
        assert [name for name, _ in traces[:per_panel]] == ["pooled (95% interval)"] + [
            f"seed {s}" for s in pooled["seeds"]]
        assert traces[0][1] == pytest.approx([r["estimate"] for r in pooled["hypervolume"]])
        assert traces[1][1] == pytest.approx([r["per_seed"]["0"] for r in pooled["hypervolume"]])
        driver.find_elements(By.CSS_SELECTOR, "#study-forest .legend .legendtoggle")[1].click()  # seed 0
        visible = "return document.getElementById('study-forest').data.map(t => t.visible)"
        WebDriverWait(driver, 5).until(lambda d: d.execute_script(visible)[1] == "legendonly")
        assert driver.execute_script(visible)[1 + per_panel] == "legendonly"  # the seed hides in every panel
        assert not console_errors(driver)
    finally:
        driver.quit()
