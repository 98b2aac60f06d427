"""The rendered leaderboard: ranking, formatting, escaping and determinism of leaderboard/README.md and index.html.

The Markdown is read back through markdown-it (CommonMark with GFM tables), the HTML through html5lib (strict) and
Python's HTMLParser: independent parsers, so an escaping slip shows as an extra cell, element or link."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import random
import re
import sys
from html.parser import HTMLParser
from types import ModuleType, SimpleNamespace

import html5lib
import pytest
from markdown_it import MarkdownIt
from synthetic.board_entries import entry

from gnnbench.cli import main
from gnnbench.leaderboard.board import format_quantity, format_seconds, tables
from gnnbench.leaderboard.page import json_for_html
from gnnbench.leaderboard.render import markdown_url, render, render_html, render_markdown, stale_files

HOSTILE = "a|b\nc <script>window.pwned=1</script> [x](https://evil.example) *em* `t` &amp; \\|"
ROAD = {"benchmark": "road", "dataset": "MA", "task": "accident_occurrence", "synthetic": False, "metric": "roc_auc"}


# --------------------------------------------------------------------------------------- reading helpers


class _Tables(HTMLParser):
    """Headings (h2/h3) and tables (rows of cells: text, links) of an HTML document, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.headings: list[tuple[str, str]] = []
        self.tables: list[list[list[dict]]] = []
        self._heading: list[str] | None = None
        self._cell: dict | None = None
        self._tag = ""

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "h3"):
            self._heading, self._tag = [], tag
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = {"text": "", "links": [], "tags": []}
        elif self._cell is not None:
            self._cell["tags"].append(tag)
            if tag == "a":
                self._cell["links"].append(dict(attrs).get("href"))

    def handle_endtag(self, tag):
        if tag in ("h2", "h3") and self._heading is not None:
            self.headings.append((tag, "".join(self._heading)))
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._heading is not None:
            self._heading.append(data)


def markdown_tables(markdown: str) -> _Tables:
    parser = _Tables()
    parser.feed(MarkdownIt("commonmark").enable("table").render(markdown))
    return parser


def column(table: list[list[dict]], name: str) -> list[str]:
    header = [cell["text"] for cell in table[0]]
    index = header.index(name)
    return [row[index]["text"] for row in table[1:]]


def page_data(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="board-data">(.*?)</script>', page, re.S)
    return json.loads(block.group(1))


# ---------------------------------------------------------------------------------------------- ranking


def test_ranking_higher_is_better_orders_by_test_mean_descending():
    entries = [entry("mid", test=[0.70, 0.80]), entry("best", test=[0.90, 0.92]), entry("worst", test=[0.1, 0.3])]
    table = markdown_tables(render_markdown(entries)).tables[0]
    assert column(table, "Method") == ["best", "mid", "worst"]  # means 0.91, 0.75, 0.2
    assert column(table, "Rank") == ["1", "2", "3"]


def test_ranking_lower_is_better_orders_by_test_mean_ascending():
    entries = [entry(name, test=test, metric="mae", higher_is_better=False, **{k: v for k, v in ROAD.items()
                                                                                if k != "metric"})
               for name, test in (("m3", [9.0, 11.0]), ("m1", [1.0, 2.0]), ("m2", [4.0, 5.0]))]
    markdown = render_markdown(entries)
    table = markdown_tables(markdown).tables[0]
    assert column(table, "Method") == ["m1", "m2", "m3"]  # means 1.5, 4.5, 10
    assert "Metric: mae, lower is better; 3 submissions." in markdown


def test_ties_broken_by_valid_mean_then_name_and_equal_entries_share_a_rank():
    entries = [entry("zeta", test=[0.8, 0.8], valid=[0.7, 0.7]), entry("Beta", test=[0.8, 0.8], valid=[0.9, 0.9]),
               entry("alpha", test=[0.8, 0.8], valid=[0.7, 0.7]), entry("last", test=[0.5, 0.5])]
    table = markdown_tables(render_markdown(entries)).tables[0]
    # same test mean: Beta's validation mean is higher; alpha and zeta tie on both (alphabetical, same rank)
    assert column(table, "Method") == ["Beta", "alpha", "zeta", "last"]
    assert column(table, "Rank") == ["1", "2", "2", "4"]


def test_ranking_direction_for_validation_ties_follows_the_metric():
    entries = [entry(name, test=[2.0, 2.0], valid=valid, metric="mae", higher_is_better=False)
               for name, valid in (("high-valid", [5.0, 5.0]), ("low-valid", [1.0, 1.0]))]
    assert [row.submission.method.name for row in tables(entries)[0].rows] == ["low-valid", "high-valid"]


def test_submissions_of_one_task_must_agree_on_the_metric():
    entries = [entry("a", test=[0.5, 0.6]), entry("b", test=[0.5, 0.6], metric="accuracy")]
    with pytest.raises(ValueError, match=r"algo/clrs30/bfs.*'accuracy'.*'clrs30_score'"):
        render_markdown(entries)


def test_tasks_grouped_by_benchmark_in_order():
    entries = [entry("r", test=[0.6, 0.7], **ROAD), entry("d", test=[0.5, 0.6], task="dfs"),
               entry("b", test=[0.5, 0.6], task="bfs")]
    headings = markdown_tables(render_markdown(entries)).headings
    assert headings == [("h2", "Algorithmic reasoning (algo)"), ("h3", "algo/clrs30/bfs (synthetic)"),
                        ("h3", "algo/clrs30/dfs (synthetic)"), ("h2", "Road accidents (road)"),
                        ("h3", "road/MA/accident_occurrence")]


# ------------------------------------------------------------------------------------------- formatting


def test_mean_and_unbiased_std_formatting():
    entries = [
        entry("three", test=[0.80, 0.82, 0.81], valid=[0.5, 0.7, 0.9]),  # std 0.01; valid std 0.2 (n - 1 divisor)
        entry("one", test=[0.25]),  # one seed: no deviation
    ]
    table = markdown_tables(render_markdown(entries)).tables[0]
    assert column(table, "Test clrs30_score") == ["0.8100 ± 0.0100", "0.2500"]
    assert column(table, "Valid clrs30_score") == ["0.7000 ± 0.2000", "0.2500"]
    assert column(table, "Seeds") == ["3", "1"]
    large = [entry("big", test=[123.456, 130.0], metric="mae", higher_is_better=False)]
    # mean 126.728, std 6.544 / sqrt(2) = 4.6273
    assert column(markdown_tables(render_markdown(large)).tables[0], "Test mae") == ["126.73 ± 4.63"]


def test_columns_parameters_hessian_time_hardware():
    entries = [entry("m", test=[0.5, 0.7], parameters=1234567, traces=[1.0e4, 1.5e4], bounds=[0.3, 0.5],
                     gaps=[0.1, 0.3], seconds=[60.0, 120.0],
                     hardware={"device": "cuda", "gpu": "NVIDIA H200", "cpu": "x", "cpu_count": 16}),
               entry("n", test=[0.1, 0.2], bounds=[0.01, 0.03], gaps=[0.1, 0.3], seconds=[7200.0, 7200.0])]
    table = markdown_tables(render_markdown(entries)).tables[0]
    assert column(table, "Parameters") == ["1,234,567", "1,000"]
    assert column(table, "Hessian trace") == ["1.25e4", "100"]
    assert column(table, "Bound vs gap") == ["0.4 vs 0.2", "0.02 vs 0.2 (below gap)"]
    assert column(table, "Time per seed") == ["1.5 min", "2.0 h"]
    assert column(table, "Hardware") == ["cuda: NVIDIA H200", "cpu: Test CPU (2 cores)"]


def test_missing_hessian_shows_a_dash():
    missing = entry("no-hessian", test=[0.5, 0.6])
    seeds = [seed.model_copy(update={"hessian": None}) for seed in missing.submission.seeds]
    missing = type(missing)(missing.submission.model_copy(update={"seeds": seeds}), missing.folder, True)
    table = markdown_tables(render_markdown([missing])).tables[0]
    assert column(table, "Hessian trace") == ["–"] and column(table, "Bound vs gap") == ["–"]
    assert page_data(render_html([missing]))["tasks"][0]["rows"][0]["plot"]["trace"] is None


@pytest.mark.parametrize(("value", "text"), [(12345.0, "1.23e4"), (0.000123, "0.000123"), (-1.5e-5, "-1.5e-5"),
                                             (456.0, "456"), (0.5, "0.5")])
def test_format_quantity(value, text):
    assert format_quantity(value) == text


@pytest.mark.parametrize(("seconds", "text"), [(12.34, "12.3 s"), (90, "1.5 min"), (5400, "1.5 h")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_reduced_budget_is_visible():
    entries = [entry("reduced", test=[0.5, 0.6], budget="300 steps, CPU"), entry("full", test=[0.4, 0.5])]
    markdown = render_markdown(entries)
    assert column(markdown_tables(markdown).tables[0], "Budget") == ["300 steps, CPU (reduced)", "full"]
    assert [row["cells"][10][1] for row in page_data(render_html(entries))["tasks"][0]["rows"]] == [
        "300 steps, CPU (reduced)", "full"]


# ---------------------------------------------------------------------------------------- marks, labels


def test_rescored_marks_and_legend():
    entries = [entry("checked", test=[0.9, 0.9]), entry("unchecked", test=[0.5, 0.5], rescored=False)]
    markdown = render_markdown(entries)
    assert column(markdown_tables(markdown).tables[0], "Rescored") == ["✓", ""]
    assert "Legend: ✓ rescored from the submitted predictions" in markdown
    rows = page_data(render_html(entries))["tasks"][0]["rows"]
    assert [(row["rescored"], row["cells"][11]) for row in rows] == [(True, [1, "✓"]), (False, [0, ""])]


def test_synthetic_label_only_on_synthetic_datasets():
    entries = [entry("s", test=[0.5, 0.6]), entry("r", test=[0.5, 0.6], **ROAD)]
    headings = [text for tag, text in markdown_tables(render_markdown(entries)).headings if tag == "h3"]
    assert headings == ["algo/clrs30/bfs (synthetic)", "road/MA/accident_occurrence"]
    assert [task["synthetic"] for task in page_data(render_html(entries))["tasks"]] == [True, False]


def test_method_links_code_and_paper():
    entries = [entry("m", test=[0.5, 0.6], code_url="https://example.org/a(b)|c", paper="https://arxiv.org/abs/1",
                     external_data="ImageNet features")]
    cell = markdown_tables(render_markdown(entries)).tables[0][1][1]
    assert cell["links"] == ["https://example.org/a%28b%29%7Cc", "https://arxiv.org/abs/1"]
    assert cell["text"] == "m · paper · external data"


def test_markdown_url_refuses_other_schemes():
    with pytest.raises(ValueError, match="javascript"):
        markdown_url("javascript:alert(1)")


# -------------------------------------------------------------------------------------------- escaping


def test_markdown_escapes_a_hostile_method_name():
    entries = [entry(HOSTILE, test=[0.9, 0.9]), entry("plain", test=[0.5, 0.5])]
    markdown = render_markdown(entries)
    parsed = markdown_tables(markdown)
    table = parsed.tables[0]
    assert all(len(row) == 12 for row in table)  # no pipe of the name split the row
    cell = table[1][1]
    assert cell["text"] == " ".join(HOSTILE.split())  # shown as its text, newline as a space
    assert cell["tags"] == ["a"] and cell["links"] == ["https://example.org/code"]  # no script, em, code, link
    assert "<script" not in markdown


def test_html_json_block_escapes_a_hostile_name():
    page = render_html([entry(HOSTILE + "</script><!--", test=[0.9, 0.9])])
    block = re.search(r'<script type="application/json" id="board-data">(.*?)</script>', page, re.S).group(1)
    assert not set("<>&") & set(block)
    assert json.loads(block)["tasks"][0]["rows"][0]["method"]["name"] == HOSTILE + "</script><!--"
    assert page.count("<script") == 2 and page.count("</script>") == 2


def test_json_for_html_escapes_angle_brackets_and_ampersands():
    text = json_for_html({"a": "</script>&<!--", "b": "\u2028"})
    assert text == '{"a":"\\u003c/script\\u003e\\u0026\\u003c!--","b":"\\u2028"}'
    assert json.loads(text) == {"a": "</script>&<!--", "b": "\u2028"}


# ---------------------------------------------------------------------------------------------- the page


class _Resources(HTMLParser):
    """Every URL an HTML document would load (src, link href, CSS url() and @import), and the inline code."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self.styles: list[str] = []
        self.policy = ""
        self._open: tuple[str, dict] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in ("src", "srcset", "poster", "data", "background"):
            if attributes.get(name):
                self.urls.append(attributes[name])
        if tag == "link" and attributes.get("href"):
            self.urls.append(attributes["href"])
        if tag == "meta" and (attributes.get("http-equiv") or "").lower() == "content-security-policy":
            self.policy = attributes.get("content", "")
        if attributes.get("style"):
            self.styles.append(attributes["style"])
        if tag in ("script", "style"):
            self._open = (tag, attributes)

    def handle_data(self, data):
        if self._open and self._open[0] == "script":
            self.scripts.append((self._open[1], data))
        elif self._open:
            self.styles.append(data)

    def handle_endtag(self, tag):
        self._open = None

    def remote(self) -> list[str]:
        css = " ".join(self.styles)
        found = [url for url in self.urls if re.match(r"\s*(https?:)?//", url, re.I)]
        found += re.findall(r"@import[^;]*", css, re.I)
        found += [url for url in re.findall(r"url\(\s*['\"]?([^'\")]*)", css, re.I) if not url.startswith("#")]
        return found


def resources(page: str) -> _Resources:
    parser = _Resources()
    parser.feed(page)
    return parser


def test_page_loads_no_external_resources():
    page = render_html([entry(HOSTILE, test=[0.9, 0.9], paper="https://arxiv.org/abs/1"),
                        entry("r", test=[0.5, 0.6], **ROAD)])
    found = resources(page)
    assert found.remote() == [] and found.urls == []
    assert [attributes for attributes, _ in found.scripts] == [{"type": "application/json", "id": "board-data"}, {}]
    assert "default-src 'none'" in found.policy
    # the check itself sees a remote script, stylesheet, import and font
    bad = ('<script src="https://cdn.example/x.js"></script><link rel="stylesheet" href="//cdn.example/x.css">'
           '<style>@import "x.css"; @font-face { src: url(https://fonts.example/f.woff2) }</style>')
    assert len(resources(bad).remote()) == 4


def test_page_policy_admits_exactly_its_inline_script_and_style():
    found = resources(render_html([entry("m", test=[0.5, 0.6])]))

    def digest(text):
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    directives = dict(part.strip().split(" ", 1) for part in found.policy.split(";"))
    code = [text for attributes, text in found.scripts if not attributes]
    assert directives["script-src"] == digest(code[0]) and directives["style-src"] == digest(found.styles[0])
    assert directives["default-src"] == "'none'" and directives["img-src"] == "'none'"


def test_page_is_valid_html5():
    page = render_html([entry(HOSTILE, test=[0.9, 0.9]), entry("r", test=[0.5, 0.6], **ROAD)])
    parser = html5lib.HTMLParser(strict=True)
    document = parser.parse(page)  # strict: any parse error raises
    assert parser.errors == []
    names = [node.tag.split("}")[-1] for node in document.iter()]
    assert names.count("main") == 1 and names.count("title") == 1
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"en\">") and '<meta charset="utf-8">' in page
    assert html.unescape(re.search(r"<title>(.*?)</title>", page).group(1)) == "gnnbench leaderboard"


def test_page_data_matches_the_markdown_table():
    entries = [entry("a", test=[0.5, 0.7], parameters=10), entry("b", test=[0.9, 0.8], parameters=20), entry(
        "c", test=[0.2, 0.1], parameters=30, traces=[-1.0, 2.0])]
    table = markdown_tables(render_markdown(entries)).tables[0]
    task = page_data(render_html(entries))["tasks"][0]
    assert [cell["text"] for cell in table[0]] == [column["label"] for column in task["columns"]]
    for markdown_row, row in zip(table[1:], task["rows"]):
        assert [cell["text"] for cell in markdown_row] == [
            " · ".join([text] + (["paper"] if row["method"]["paper"] else [])) for _, text in row["cells"]]
    assert [row["plot"]["parameters"] for row in task["rows"]] == [20, 10, 30]
    assert [row["plot"]["trace"] for row in task["rows"]] == [100.0, 100.0, 0.5]


# ---------------------------------------------------------------------------------------- files, checks


def _board() -> list:
    return [entry(HOSTILE, test=[0.9, 0.91, 0.92], parameters=5000), entry("m2", test=[0.5, 0.6, 0.55]),
            entry("r1", test=[0.7, 0.72], **ROAD), entry("r2", test=[0.6, 0.66], rescored=False, **ROAD)]


def test_render_is_deterministic(tmp_path):
    entries = _board()
    first = render(entries, tmp_path / "a")
    shuffled = entries[:]
    random.Random(0).shuffle(shuffled)
    second = render(shuffled, tmp_path / "b")
    assert [path.name for path in first] == ["README.md", "index.html"]
    for one, two in zip(first, second):
        assert one.read_bytes() == two.read_bytes()
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == ["README.md", "index.html"]  # no temp files


def test_stale_files_names_missing_and_changed_files(tmp_path):
    entries = _board()
    assert stale_files(entries, tmp_path) == [tmp_path / "README.md", tmp_path / "index.html"]
    render(entries, tmp_path)
    assert stale_files(entries, tmp_path) == []
    page = tmp_path / "index.html"
    page.write_text(page.read_text().replace("0.9100", "0.9900"))
    assert stale_files(entries, tmp_path) == [page]
    render(entries, tmp_path)
    (tmp_path / "README.md").write_text((tmp_path / "README.md").read_text() + "\n")
    assert stale_files(entries, tmp_path) == [tmp_path / "README.md"]
    assert stale_files(entries[:-1], tmp_path) == [tmp_path / "README.md", tmp_path / "index.html"]


def test_empty_board_says_so():
    assert "No submissions yet." in render_markdown([])
    assert page_data(render_html([])) == {"tasks": []}


# ----------------------------------------------------------------------------------------------- the CLI


class _FakeValidator:
    """Stands in for gnnbench.leaderboard.validate (its report's shape: ``entries`` with ``folder``, ``submission``,
    ``errors``, ``rescored``, ``ok``; ``ok``, ``errors`` and ``all_errors()``): a fixed report, its calls recorded."""

    def __init__(self, entries, errors=None, report_errors=()):
        self.entries, self.errors, self.report_errors, self.calls = entries, errors or {}, list(report_errors), []

    def validate(self, path=None, *, data_root=None, base="HEAD", history=False, rescore=True):
        self.calls.append({"path": path, "data_root": data_root, "rescore": rescore})
        results = []
        for board_entry in self.entries:
            errors = self.errors.get(board_entry.submission.method.name, [])
            results.append(SimpleNamespace(folder=board_entry.folder, submission=board_entry.submission, errors=errors,
                                           rescored=board_entry.rescored and rescore, ok=not errors))
        all_errors = [*self.report_errors, *(error for result in results for error in result.errors)]
        return SimpleNamespace(entries=results, ok=not all_errors, errors=self.report_errors,
                               all_errors=lambda: all_errors)


@pytest.fixture
def fake_validator(monkeypatch):
    def install(entries, errors=None, report_errors=()):
        fake = _FakeValidator(entries, errors, report_errors)
        module = ModuleType("gnnbench.leaderboard.validate")
        module.validate = fake.validate
        monkeypatch.setitem(sys.modules, "gnnbench.leaderboard.validate", module)
        return fake
    return install


def test_cli_render_writes_the_board_beside_the_submissions(tmp_path, fake_validator, capsys):
    submissions = tmp_path / "leaderboard" / "submissions"
    submissions.mkdir(parents=True)
    entries = _board()
    fake = fake_validator(entries)
    assert main(["leaderboard", "render", str(submissions), "--data-root", str(tmp_path / "data")]) == 0
    assert fake.calls == [{"path": submissions, "data_root": tmp_path / "data", "rescore": True}]
    reference = render(entries, tmp_path / "reference")
    for path in reference:
        assert (tmp_path / "leaderboard" / path.name).read_bytes() == path.read_bytes()
    assert "wrote" in capsys.readouterr().out


def test_cli_render_refuses_invalid_submissions(tmp_path, fake_validator, capsys):
    fake_validator(_board(), errors={"m2": ["seed 1: test.score: 0.6 does not match the rescored 0.5"]})
    assert main(["leaderboard", "render", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "seed 1: test.score: 0.6 does not match the rescored 0.5" in error and "1 of 4 submissions" in error
    assert not (tmp_path / "out").exists()


def test_cli_render_refuses_when_the_report_has_errors_beyond_the_entries(tmp_path, fake_validator, capsys):
    fake_validator(_board(), report_errors=["algo-clrs30-bfs/gone: removed since HEAD"])
    assert main(["leaderboard", "render", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "algo-clrs30-bfs/gone: removed since HEAD" in error and "0 of 4 submissions are invalid, 1 other" in error
    assert not (tmp_path / "out").exists()


def test_cli_render_takes_the_submissions_directory_not_one_submission(tmp_path, fake_validator, capsys):
    fake = fake_validator(_board())
    (tmp_path / "submission.json").write_text("{}")
    assert main(["leaderboard", "render", str(tmp_path)]) == 2
    assert "render takes the submissions directory" in capsys.readouterr().err and fake.calls == []


def test_cli_render_without_a_submissions_directory_says_where_it_looked(tmp_path, fake_validator, capsys,
                                                                          monkeypatch):
    fake = fake_validator(_board())
    monkeypatch.chdir(tmp_path)  # not a clone of the repository: no leaderboard/submissions here
    assert main(["leaderboard", "render"]) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'leaderboard' / 'submissions'}: no submissions directory" in error
    assert fake.calls == [] and not (tmp_path / "leaderboard").exists()


def test_cli_render_check_names_the_stale_file(tmp_path, fake_validator, capsys):
    entries = _board()
    fake_validator(entries)
    out = tmp_path / "out"
    assert main(["leaderboard", "render", str(tmp_path), "--out", str(out), "--check"]) == 1  # nothing rendered yet
    assert not out.exists() and "README.md is missing" in capsys.readouterr().err
    render(entries, out)
    assert main(["leaderboard", "render", str(tmp_path), "--out", str(out), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    page = out / "index.html"
    page.write_text(page.read_text().replace("m2", "m3"))
    before = page.read_bytes()
    assert main(["leaderboard", "render", str(tmp_path), "--out", str(out), "--check"]) == 1
    error = capsys.readouterr().err
    assert f"{page} is out of date" in error and "README.md" not in error
    assert page.read_bytes() == before  # --check writes nothing


def test_cli_render_no_rescore_drops_the_marks(tmp_path, fake_validator):
    fake = fake_validator(_board())
    assert main(["leaderboard", "render", str(tmp_path), "--out", str(tmp_path / "out"), "--no-rescore"]) == 0
    assert fake.calls[0]["rescore"] is False
    table = markdown_tables((tmp_path / "out" / "README.md").read_text()).tables[0]
    assert column(table, "Rescored") == ["", ""]
