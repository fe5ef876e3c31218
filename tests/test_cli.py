"""The fastact command: every subcommand end to end in --quick mode, bad arguments, hints."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastact import cli

pytest.importorskip("sklearn")


def run(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr()


def test_xor_quick_writes_tables_and_plot(tmp_path, capsys):
    code, out = run(["xor", "--quick", "--seeds", "3", "--out", str(tmp_path)], capsys)
    assert code == 0
    assert "success_rate" in out.out and "leaky_relu" in out.out
    assert {"xor.csv", "xor.md"} <= set(os.listdir(tmp_path))
    rows = (tmp_path / "xor.csv").read_text().splitlines()
    assert rows[0].startswith("activation,solved,seeds") and len(rows) == 6


def test_study_quick(tmp_path, capsys):
    code, out = run(["study", "--quick", "--seeds", "1", "--out", str(tmp_path)], capsys)
    assert code == 0
    files = set(os.listdir(tmp_path))
    assert {"study.csv", "study.md"} <= files
    text = (tmp_path / "study.csv").read_text()
    for name in ("sigmoid", "prelu", "gelu", "batch_norm", "dropout", "digits", "spirals"):
        assert name in text
    pytest.importorskip("matplotlib")
    assert {"study_digits_accuracy.png", "study_spirals_loss.png"} <= files


def test_gradients_quick_shows_sigmoid_decay(tmp_path, capsys):
    code, out = run(["gradients", "--quick", "--depth", "6", "--out", str(tmp_path)], capsys)
    assert code == 0
    lines = [line.split(",") for line in (tmp_path / "gradients.csv").read_text().splitlines()]
    header, rows = lines[0], lines[1:]
    first, last = header.index("L1"), header.index("L6")
    sig = next(r for r in rows if r[0] == "sigmoid/glorot" and r[1] == "at_init")
    relu = next(r for r in rows if r[0] == "relu/he" and r[1] == "at_init")
    assert float(sig[first]) < 0.1 * float(sig[last])  # vanishing through sigmoid layers
    assert 0.1 < float(relu[first]) / float(relu[last]) < 10  # flat with He + ReLU


def test_bench_info_tour(capsys):
    assert run(["bench", "--size", "20000"], capsys)[0] == 0
    code, out = run(["info"], capsys)
    assert code == 0 and "numba" in out.out and "threads" in out.out
    code, out = run(["tour"], capsys)
    assert code == 0 and "0.25" in out.out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["xor", "--seeds", "0"],
        ["gradients", "--depth", "x"],
        ["bench", "--size", "-3"],
    ],
)
def test_bad_arguments_exit_2_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: fastact" in capsys.readouterr().err


def test_missing_scikit_learn_gives_a_hint():
    code = (
        "import sys; sys.modules['sklearn'] = None; sys.modules['sklearn.datasets'] = None\n"
        "from fastact.cli import main; sys.exit(main(['study', '--quick', '--seeds', '1']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "needs scikit-learn: pip install scikit-learn" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_matplotlib_gives_a_hint(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        f"from fastact.cli import main; sys.exit(main(['gradients', '--quick', '--depth', '3', '--out', {str(tmp_path)!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "plots need matplotlib" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "gradients.csv").exists()


def test_python_dash_m_and_help():
    proc = subprocess.run(
        [sys.executable, "-m", "fastact", "xor", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "--quick" in proc.stdout


@pytest.mark.slow
def test_demo_runs_everything_quick(tmp_path, capsys):
    code, out = run(["demo", "--out", str(tmp_path)], capsys)
    assert code == 0
    assert {"xor.csv", "study.csv", "gradients.csv"} <= set(os.listdir(tmp_path))
    assert f"files to {tmp_path}" in out.out
