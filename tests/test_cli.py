"""The CLI's conventions: every option documented, -v before or after the job name, --out
folders."""

from __future__ import annotations

import argparse

import pytest

from jobs.cli import build_parser
from jobs.common import output_file


def _subparsers(parser):
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_every_option_of_every_job_has_help():
    parser, mods = build_parser()
    jobs = _subparsers(parser)
    assert set(jobs) == set(mods) and {"benchmark", "export", "search"} <= set(jobs)
    missing = [
        f"{name} {a.option_strings[0]}"
        for name, p in jobs.items()
        for a in p._actions
        if a.option_strings and (not a.help or a.help == argparse.SUPPRESS)
    ]
    assert not missing, f"options without help: {missing}"
    assert "IndexBinaryFlat" in jobs["export"].format_help()


@pytest.mark.parametrize(
    "argv, verbose",
    [
        (["benchmark", "-v"], True),
        (["-v", "benchmark"], True),
        (["benchmark", "--verbose"], True),
        (["benchmark"], False),
    ],
)
def test_verbose_before_or_after_the_job_name(argv, verbose):
    parser, _ = build_parser("benchmark")
    args = parser.parse_args([*argv, "--database", "d", "--queries", "q"])
    assert args.verbose is verbose and args.job == "benchmark"


def test_out_folder_gets_the_file_inside(tmp_path):
    assert output_file(f"{tmp_path}/new/", "b.json") == f"{tmp_path}/new/b.json"
    assert output_file(str(tmp_path), "b.json") == f"{tmp_path}/b.json"  # exists: a folder
    assert output_file(f"{tmp_path}/x.json", "b.json") == f"{tmp_path}/x.json"
    parser, _ = build_parser("benchmark")
    help_text = _subparsers(parser)["benchmark"].format_help()
    assert "benchmark.json inside" in " ".join(help_text.split())
    assert "--report DIR" in help_text
