import subprocess
import sys

import pytest

from eochange import __version__
from eochange.cli import main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "synth", "prepare"):
        assert command in out


def test_version_via_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "eochange", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"eochange {__version__}"


def test_synth_and_prepare_commands(tmp_path, capsys):
    root = tmp_path / "raw"
    assert (
        main(
            [
                "synth",
                "dynamicearthnet",
                str(root),
                "--aois",
                "3",
                "--size",
                "32",
                "--days",
                "35",
                "--seed",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert "3 areas x 1 labelled months" in capsys.readouterr().out
    assert (
        main(
            [
                "prepare",
                "dynamicearthnet",
                str(root),
                "--out",
                str(tmp_path / "c.zarr"),
                "--scheduler",
                "synchronous",
                "--quiet",
            ]
        )
        == 0
    )
    assert "3 areas written" in capsys.readouterr().out
    assert (
        main(
            [
                "prepare",
                "dynamicearthnet",
                str(root),
                "--out",
                str(tmp_path / "c.zarr"),
                "--scheduler",
                "synchronous",
                "--quiet",
            ]
        )
        == 0
    )
    assert "0 areas written, 3 already complete" in capsys.readouterr().out


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    code = main(
        ["prepare", "dynamicearthnet", str(tmp_path / "nope"), "--out", str(tmp_path / "c")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "nope: dataset root not found" in err
    code = main(
        [
            "prepare",
            "dynamicearthnet",
            str(tmp_path),
            "--out",
            str(tmp_path / "c"),
            "--scheduler",
            "bogus",
        ]
    )
    assert code == 2 and "--scheduler" in capsys.readouterr().err
    code = main(["synth", "dynamicearthnet", str(tmp_path / "s"), "--size", "30"])
    assert code == 2 and "size" in capsys.readouterr().err
