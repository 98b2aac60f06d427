"""The default output is quiet: no tracebacks from the loopback portal's expected faults (logged at debug level),
no ``torch.jit.script`` FutureWarning from importing PyG, no "Processing... Done!" from PyG datasets."""

from __future__ import annotations

import logging
import socket
import struct
import subprocess
import sys
import time

import pytest

from gnnbench.road.demo.server import Fault, LoopbackPortal

LOGGER = "gnnbench.road.demo.server"
BIG = bytes(range(256)) * (32 * 4096)  # 32 MiB: more than the loopback socket buffers hold


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a client that gives up mid-transfer does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _get(portal: LoopbackPortal, path: str) -> socket.socket:
    host, port = portal.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def _read_response(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return body


def _wait_for_debug_records(caplog, count: int) -> list[logging.LogRecord]:
    deadline = time.monotonic() + 10
    while True:
        records = [record for record in caplog.records if record.name == LOGGER]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.02)


@pytest.mark.parametrize("case", ["reset mid-body", "reset mid-body of a truncate fault", "reset while idle"])
def test_client_resets_are_logged_at_debug_level_not_printed(case, capfd, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with LoopbackPortal() as portal:
        portal.add_file("/big", BIG)
        portal.add_file("/small", b"0123456789")
        if case == "reset mid-body of a truncate fault":
            portal.inject("/big", Fault("truncate"))
        if case == "reset while idle":  # a keep-alive connection the client drops: the server waits for a request
            sock = _get(portal, "/small")
            assert _read_response(sock) == b"0123456789"
        else:
            sock = _get(portal, "/big")
            while not portal.requests:  # the server is writing the body
                time.sleep(0.01)
            time.sleep(0.1)
        _reset(sock)
        records = _wait_for_debug_records(caplog, 1)
    assert records and all(record.levelno == logging.DEBUG for record in records), records
    assert any(isinstance(record.msg, str) and "loopback portal" in record.getMessage() for record in records)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err and "ConnectionResetError" not in err, err


def test_an_unexpected_server_error_is_logged_not_printed(capfd, caplog, monkeypatch):
    """A bug in a route is a warning record (with its traceback in the record), still not a print."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with LoopbackPortal() as portal:
        monkeypatch.setattr(portal, "_route", lambda *args: 1 / 0)
        sock = _get(portal, "/anything")
        records = _wait_for_debug_records(caplog, 1)
        sock.close()
    assert [record.levelno for record in records] == [logging.WARNING]
    assert records[0].exc_info and records[0].exc_info[0] is ZeroDivisionError
    assert "Traceback" not in capfd.readouterr().err


def _stderr_of(code: str) -> str:
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.heavy
def test_importing_pyg_through_gnnbench_prints_no_torch_jit_script_warning():
    plain = _stderr_of("import torch_geometric")
    if "torch.jit.script` is deprecated" not in plain:
        pytest.skip("this torch/PyG pair does not warn on import: nothing to silence")
    code = ("import warnings; before = list(warnings.filters)\n"
            "import gnnbench.datasets, gnnbench.models.road.data, gnnbench.models.road.sampling\n"
            "assert warnings.filters == before, 'the filter must not outlive the import'\n")
    assert _stderr_of(code) == ""
    # models first (the harness's road family imports them before the datasets)
    assert _stderr_of("import gnnbench.models.road.sampling") == ""


def test_loading_datasets_prints_nothing(tmp_path, capfd, monkeypatch):
    from gnnbench.datasets import AlgorithmicReasoningDataset

    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # PyG prints "Processing..." only outside pytest
    capfd.readouterr()
    dataset = AlgorithmicReasoningDataset(tmp_path, "bfs", "valid", num_samples=3, n=5)  # generated and processed
    again = AlgorithmicReasoningDataset(tmp_path, "bfs", "valid", num_samples=3, n=5, pre_transform=lambda d: d)
    assert len(dataset) == len(again) == 3
    assert capfd.readouterr() == ("", "")
