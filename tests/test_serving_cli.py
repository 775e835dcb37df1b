"""`agegender serve` on the command line: its flags, and a clear error without the extra."""

from __future__ import annotations

import sys

import pytest

from agegender.cli.main import EXIT_ERROR, build_parser, main


def test_serve_flags_parse():
    args = build_parser().parse_args(["serve", "--port", "9000", "--max-batch", "8",
                                      "--max-queue", "4", "--cors-origin", "https://a.example"])
    assert (args.host, args.port, args.max_batch, args.max_queue) == ("127.0.0.1", 9000, 8, 4)
    assert args.cors_origin == ["https://a.example"]


def test_serve_without_the_extra_names_it(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    assert main(["serve"]) == EXIT_ERROR
    assert "agegender[serve]" in caplog.text


def test_a_bad_model_stops_serve_before_the_port_opens(tmp_path, caplog):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    assert main(["serve", "--model", str(tmp_path / "missing.onnx")]) == EXIT_ERROR
    assert "missing.onnx" in caplog.text



@pytest.mark.parametrize(("flag", "value"), [
    ("--max-batch", "-1"), ("--max-batch", "0"), ("--max-queue", "0"), ("--workers", "0"),
    ("--max-upload-mb", "0"), ("--max-upload-mb", "-3"), ("--timeout", "0"),
    ("--port", "70000"), ("--port", "-1"), ("--max-queue", "lots")])
def test_serve_refuses_each_setting_out_of_range_with_exit_2(flag, value, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["serve", flag, value])
    assert stopped.value.code == EXIT_ERROR == 2
    assert f"argument {flag}:" in capsys.readouterr().err


def test_a_port_in_use_is_exit_2_with_a_sentence(caplog):
    import socket

    pytest.importorskip("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == EXIT_ERROR
    assert f"port {port} on 127.0.0.1 is already in use" in caplog.text
    assert "serving" not in caplog.text
