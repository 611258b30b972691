"""Every metric, label, config key and CLI flag is documented: in the README or the pages of
docs/ (the metrics' and keys' reference pages are made from the code: test_site.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import docs_text

from exporter.cli.main import main
from exporter.config.schema import REQUIRED, documented_keys
from exporter.config.table import Config
from exporter.store.catalogue import every_metric

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
# The README and every page of the documentation site, as one text.
DOCS = docs_text()
EXAMPLE = (ROOT / "config.example.yaml").read_text()


def readme_metric_rows():
    rows = {}
    for line in DOCS.splitlines():
        m = re.match(r"\| `(llm_\w+)` \| (\w+) \| ([\w, ]*) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3).split(", ") if m.group(3) else [])
    return rows


def test_every_metric_is_in_the_reference_with_its_type_and_labels():
    rows = readme_metric_rows()
    declared = every_metric()
    assert len(declared) == len(rows) >= 40
    for name, (kind, labels, _) in declared.items():
        assert rows[name] == (kind, labels), name


def test_every_label_is_explained():
    labels = {label for _, names in readme_metric_rows().values() for label in names}
    for label in labels:
        assert f"| `{label}` |" in DOCS, label


@pytest.mark.parametrize("path,default,doc", documented_keys(Config))
def test_every_config_key_is_documented(path, default, doc):
    assert f"| `{path}` |" in DOCS, path
    leaf = path.rsplit(".", 1)[-1].removesuffix("[]")
    assert re.search(rf"^\s*(- )?{leaf}:", EXAMPLE, re.M), f"{path} missing from example"
    if default not in (None, "", (), REQUIRED):
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert re.search(rf"^\s*(- )?{leaf}: \"?{re.escape(shown)}\b", EXAMPLE, re.M), \
            f"{path} default {shown} not shown in config.example.yaml"


def test_every_cli_flag_and_command_is_documented(capsys):
    for command in ("serve", "check-config", "prices", "export", "bench", "demo", "keys",
                    "reconcile"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert f"llm-usage-exporter {command}" in DOCS
        for flag in set(re.findall(r"(--[a-z-]+)", text)) - {"--help"}:
            assert flag in DOCS, f"{command} {flag}"


def test_readme_has_exactly_two_commands_in_quick_start():
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci


def test_every_error_type_is_in_the_errors_table_and_nothing_else():
    from exporter.record import ErrorType
    table = re.split(r"^#+ Errors$", DOCS, maxsplit=1, flags=re.M)[1].split(
        "\n\n|", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert named == set(ErrorType)



def test_the_readme_is_a_front_door_whose_links_all_lead_somewhere():
    """At most about 250 lines, nothing outside the repository, every link to a file of it
    (and a heading of that file) there."""
    assert len(README.splitlines()) <= 250
    assert "../" not in README
    for target in re.findall(r"\]\((?!https?:)([^)\s]+)\)", README):
        path, _, anchor = target.partition("#")
        page = ROOT / path
        assert page.exists(), target
        if anchor:
            headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
            slugs = {re.sub(r"\s+", "-", re.sub(r"[^\w\- ]", "", h.replace("`", "").lower()))
                     for h in headings}
            assert anchor in slugs, target
