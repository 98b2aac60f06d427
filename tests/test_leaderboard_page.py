"""The rendered leaderboard page in a real browser: headless Chromium (Debian's chromium and chromium-driver) through
selenium loads index.html from disk and the tests read the tables, the sorting and the plots back from the DOM.

Skipped when selenium, /usr/bin/chromium or /usr/bin/chromedriver is missing, unless GNNBENCH_REQUIRE_BROWSER=1 (CI),
which turns the skip into a failure. GNNBENCH_SCREENSHOT_DIR=DIR keeps the page's screenshot there."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from synthetic.board_entries import entry

from gnnbench.leaderboard.render import render

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1600, 2400)

# A method name that would run script or create an element if any string reached innerHTML.
HOSTILE = 'x|y\n</script><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
ALGO = "algo/clrs30/bfs"
ROAD = "road/MA/accident_occurrence"
ROAD_FIELDS = {"benchmark": "road", "dataset": "MA", "task": "accident_occurrence", "synthetic": False,
               "metric": "mae", "higher_is_better": False}


def _entries() -> list:
    """Two tasks. algo (higher is better): parameters 10..10^4 and traces 5..500, one decade apart (equal steps on
    the log axes), one submission without a Hessian record, training times whose order as text is not their order
    as numbers. road (lower is better): traces -10, 0, 10 (a linear axis)."""
    no_hessian = entry("PGN", test=[0.70, 0.71, 0.72], parameters=10000, seconds=[300.0] * 3)
    seeds = [seed.model_copy(update={"hessian": None}) for seed in no_hessian.submission.seeds]
    no_hessian = type(no_hessian)(no_hessian.submission.model_copy(update={"seeds": seeds}), no_hessian.folder, True)
    return [
        # means 0.81 (std 0.01), 0.62 (std 0.02), 0.92, 0.71
        entry("MPNN", test=[0.80, 0.82, 0.81], parameters=100, traces=[50.0] * 3, seconds=[40.0] * 3),
        entry("GAT", test=[0.60, 0.62, 0.64], parameters=1000, traces=[500.0] * 3, seconds=[2.0] * 3),
        entry(HOSTILE, test=[0.90, 0.92, 0.94], parameters=10, traces=[5.0] * 3, seconds=[5.0] * 3),
        no_hessian,
        entry("GCN", test=[2.0, 2.2], parameters=300, traces=[-10.0, -10.0], **ROAD_FIELDS),
        entry("MLP", test=[3.0, 3.4], parameters=200, traces=[0.0, 0.0], rescored=False, **ROAD_FIELDS),
        entry("SAGE", test=[1.0, 1.1], parameters=100, traces=[10.0, 10.0], **ROAD_FIELDS),
    ]


RANKED = {ALGO: [HOSTILE, "MPNN", "PGN", "GAT"], ROAD: ["SAGE", "GCN", "MLP"]}
PARAMETERS = {"MPNN": 100, "GAT": 1000, HOSTILE: 10, "PGN": 10000, "GCN": 300, "MLP": 200, "SAGE": 100}
TEST_MEAN = {"MPNN": 0.81, "GAT": 0.62, HOSTILE: 0.92, "PGN": 0.71, "GCN": 2.1, "MLP": 3.2, "SAGE": 1.05}
TRACE = {"MPNN": 50.0, "GAT": 500.0, HOSTILE: 5.0, "GCN": -10.0, "MLP": 0.0, "SAGE": 10.0}


def _require_browser() -> None:
    missing = [] if importlib.util.find_spec("selenium") else ["the selenium package (pip install -e '.[test]')"]
    missing += [f"{path} (apt-get install chromium chromium-driver)" for path in (CHROMIUM, CHROMEDRIVER)
                if not path.exists()]
    if missing:
        reason = "the browser test needs " + " and ".join(missing)
        if os.environ.get("GNNBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (GNNBENCH_REQUIRE_BROWSER=1)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def driver():
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    _markdown, index = render(_entries(), tmp_path_factory.mktemp("board"))
    return index


def open_board(driver, page: Path) -> None:
    """Load the page afresh (console log emptied first) and wait until its script has built the board."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")
    driver.get(page.as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.documentElement.getAttribute('data-ready') === 'true'"))


def section(driver, task: str):
    from selenium.webdriver.common.by import By

    matches = [node for node in driver.find_elements(By.CSS_SELECTOR, "section.task")
               if node.get_attribute("data-task") == task]
    assert len(matches) == 1, f"{len(matches)} sections for {task}"
    return matches[0]


def column_texts(driver, node, key: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(arguments[0].querySelectorAll('tbody tr'))"
        ".map(tr => tr.querySelector('td[data-key=\"' + arguments[1] + '\"]').textContent);", node, key)


def click_header(node, key: str) -> None:
    from selenium.webdriver.common.by import By

    node.find_element(By.CSS_SELECTOR, f'th[data-key="{key}"] button').click()


def sort_states(driver, node) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries(Array.from(arguments[0].querySelectorAll('th'))"
        ".map(th => [th.dataset.key, th.getAttribute('aria-sort')]));", node)


def severe(driver) -> list[dict]:
    return [item for item in driver.get_log("browser") if item["level"] == "SEVERE"]


# ------------------------------------------------------------------------------------------------- tests


def test_tables_present_ranked_and_labelled(driver, page):
    open_board(driver, page)
    from selenium.webdriver.common.by import By

    assert [node.get_attribute("data-task") for node in driver.find_elements(By.CSS_SELECTOR, "section.task")] == [
        ALGO, ROAD]
    for task, names in RANKED.items():
        node = section(driver, task)
        assert len(node.find_elements(By.CSS_SELECTOR, "table tbody tr")) == len(names)
        assert column_texts(driver, node, "method") == names
        assert column_texts(driver, node, "rank") == [str(i) for i in range(1, len(names) + 1)]
    algo, road = section(driver, ALGO), section(driver, ROAD)
    assert [badge.text for badge in algo.find_elements(By.CSS_SELECTOR, "h3 .badge")] == ["synthetic"]
    assert road.find_elements(By.CSS_SELECTOR, "h3 .badge") == []
    assert column_texts(driver, road, "rescored") == ["✓", "✓", ""]  # MLP was not rescored
    assert column_texts(driver, algo, "test")[1] == "0.8100 ± 0.0100"
    assert column_texts(driver, algo, "trace") == ["5", "50", "–", "500"]
    links = algo.find_elements(By.CSS_SELECTOR, "td.method a")
    assert [link.get_attribute("href") for link in links] == ["https://example.org/code"] * 4


def test_hostile_name_is_text_only(driver, page):
    open_board(driver, page)
    from selenium.webdriver.common.by import By

    assert driver.execute_script("return typeof window.pwned") == "undefined"
    assert driver.find_elements(By.TAG_NAME, "img") == []
    assert len(driver.find_elements(By.TAG_NAME, "script")) == 2  # the JSON block and the page's own
    cell = driver.execute_script(
        "const td = document.querySelector('section.task tbody tr td[data-key=\"method\"]');"
        "return [td.textContent, td.children.length, td.children[0].tagName];")
    assert cell == [HOSTILE, 1, "A"]
    titles = driver.execute_script("return Array.from(document.querySelectorAll('circle.point title'))"
                                   ".map(t => t.textContent);")
    assert sum(title.startswith(HOSTILE + " | ") for title in titles) == 2  # one point in each algo plot


def test_policy_blocks_injected_markup(driver, page):
    """The Content-Security-Policy is a second defence: markup injected on purpose creates its element, but its
    inline handler does not run (and the browser reports the refusal)."""
    open_board(driver, page)
    driver.execute_script("const div = document.createElement('div'); div.id = 'probe';"
                          "div.innerHTML = '<img src=\"x\" onerror=\"window.pwned=3\">'; document.body.append(div);")
    driver.execute_script("return new Promise(resolve => setTimeout(resolve, 300));")
    assert driver.execute_script("return document.querySelectorAll('#probe img').length") == 1
    assert driver.execute_script("return typeof window.pwned") == "undefined"
    assert any("Content Security Policy" in item["message"] for item in severe(driver))


def test_sorting_numeric_text_and_missing_values(driver, page):
    open_board(driver, page)
    node = section(driver, ALGO)
    assert sort_states(driver, node)["rank"] == "ascending"
    click_header(node, "parameters")
    values = [int(text.replace(",", "")) for text in column_texts(driver, node, "parameters")]
    assert values == [10, 100, 1000, 10000]
    assert sort_states(driver, node)["parameters"] == "ascending" and sort_states(driver, node)["rank"] == "none"
    click_header(node, "parameters")
    assert [int(text.replace(",", "")) for text in column_texts(driver, node, "parameters")] == [10000, 1000, 100, 10]
    assert sort_states(driver, node)["parameters"] == "descending"
    click_header(node, "seconds")  # numerically (2, 5, 40, 300 s), not as text ("2" < "300" < "40" < "5")
    assert column_texts(driver, node, "seconds") == ["2.0 s", "5.0 s", "40.0 s", "5.0 min"]
    click_header(node, "test")
    tests = [float(text.split(" ± ")[0]) for text in column_texts(driver, node, "test")]
    assert tests == sorted(TEST_MEAN[name] for name in RANKED[ALGO])
    click_header(node, "trace")  # PGN has no trace: last in both directions
    assert column_texts(driver, node, "trace") == ["5", "50", "500", "–"]
    click_header(node, "trace")
    assert column_texts(driver, node, "trace") == ["500", "50", "5", "–"]
    click_header(node, "method")
    assert column_texts(driver, node, "method") == sorted(RANKED[ALGO], key=str.lower)
    road = section(driver, ROAD)
    assert column_texts(driver, road, "method") == RANKED[ROAD]  # sorting one table leaves the other alone
    click_header(road, "trace")
    assert column_texts(driver, road, "trace") == ["-10", "0", "10"]


def _points(driver, node, kind: str) -> dict:
    """{method: (cx, cy, error-bar length)} of the plot `kind`, with the plot's x-axis scale and tick labels."""
    return driver.execute_script(
        "const svg = arguments[0].querySelector('svg.plot.' + arguments[1]);"
        "if (!svg) return null;"
        "const rows = Array.from(arguments[0].querySelectorAll('tbody tr'));"
        "const names = {}; rows.forEach(tr => names[tr.dataset.row] = "
        "  tr.querySelector('td[data-key=\"method\"] a, td[data-key=\"method\"] span').textContent);"
        "const points = {}; svg.querySelectorAll('circle.point').forEach(c => {"
        "  const bar = c.parentNode.querySelector('line.error-bar');"
        "  points[names[c.dataset.row]] = [Number(c.getAttribute('cx')), Number(c.getAttribute('cy')),"
        "    bar ? Math.abs(Number(bar.getAttribute('y2')) - Number(bar.getAttribute('y1'))) : 0]; });"
        "return {points: points, scale: svg.dataset.xScale, count: svg.querySelectorAll('circle.point').length,"
        "  ticks: Array.from(svg.querySelectorAll('text.x-tick')).map(t => t.textContent),"
        "  title: svg.querySelector('text.plot-title').textContent};", node, kind)


def _monotonic(points: dict, values: dict, index: int, increasing: bool) -> None:
    ordered = sorted(points, key=lambda name: values[name])
    pixels = [points[name][index] for name in ordered]
    assert all((b > a) if increasing else (b < a) for a, b in zip(pixels, pixels[1:])), (ordered, pixels)


def test_plots_one_point_per_submission_positioned_by_value(driver, page):
    open_board(driver, page)
    algo = section(driver, ALGO)
    parameters = _points(driver, algo, "parameters")
    assert parameters["count"] == 4 and set(parameters["points"]) == set(RANKED[ALGO])
    assert parameters["scale"] == "log" and parameters["ticks"] == ["10", "100", "1000", "10000"]
    assert parameters["title"] == "Test score vs parameters"
    points = parameters["points"]
    _monotonic(points, PARAMETERS, 0, increasing=True)  # more parameters: further right
    _monotonic(points, TEST_MEAN, 1, increasing=False)  # higher score: higher up (smaller y)
    steps = [points[b][0] - points[a][0] for a, b in ((HOSTILE, "MPNN"), ("MPNN", "GAT"), ("GAT", "PGN"))]
    assert max(steps) - min(steps) < 0.05  # one decade each: equal steps on a log axis
    # error bars of ± std: GAT's std (0.02) is twice MPNN's (0.01)
    assert points["GAT"][2] == pytest.approx(2 * points["MPNN"][2], rel=0.01) and points["MPNN"][2] > 0

    trace = _points(driver, algo, "trace")
    assert trace["count"] == 3 and set(trace["points"]) == {HOSTILE, "MPNN", "GAT"}  # PGN has no trace
    assert trace["scale"] == "log"
    _monotonic(trace["points"], TRACE, 0, increasing=True)
    assert "1 submission without a Hessian trace not shown" in algo.text

    road = section(driver, ROAD)
    road_trace = _points(driver, road, "trace")
    assert road_trace["count"] == 3 and road_trace["scale"] == "linear"  # traces -10, 0, 10: not all positive
    xs = road_trace["points"]
    assert xs["GCN"][0] < xs["MLP"][0] < xs["SAGE"][0]
    assert xs["MLP"][0] - xs["GCN"][0] == pytest.approx(xs["SAGE"][0] - xs["MLP"][0], abs=0.05)
    _monotonic(_points(driver, road, "parameters")["points"], PARAMETERS, 0, increasing=True)


def test_no_console_errors_no_requests_and_screenshot(driver, page, tmp_path):
    open_board(driver, page)
    node = section(driver, ALGO)
    click_header(node, "parameters")
    assert severe(driver) == []
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0  # nothing fetched
    screenshot = tmp_path / "leaderboard.png"
    assert driver.save_screenshot(str(screenshot))
    keep = os.environ.get("GNNBENCH_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, Path(keep) / screenshot.name)
    from PIL import Image, ImageStat

    viewport = driver.execute_script("return [window.innerWidth, window.innerHeight];")
    with Image.open(screenshot) as image:
        assert list(image.size) == viewport and image.width == WINDOW[0]
        gray = image.convert("L")
        assert ImageStat.Stat(gray).var[0] > 100  # not a blank page
        histogram = gray.histogram()
        assert sum(histogram[:128]) > 0.005 * gray.width * gray.height  # dark pixels: text, axes, points
