"""Normalizing pip's --target output: script headers and RECORD lines stop naming pip's venv."""

import base64
import hashlib

from launcher.image import deps_layer

LONG_PYTHON = "/" + "very-long-directory/" * 8 + "bin/python"


def _site(tmp_path, header: bytes):
    site = tmp_path / "site"
    (site / "bin").mkdir(parents=True)
    (site / "tool-1.0.dist-info").mkdir()
    script = header + b"import sys\nfrom tool import main\nsys.exit(main())\n"
    (site / "bin" / "tool").write_bytes(script)
    (site / "bin" / "helper.sh").write_bytes(b"#!/bin/bash\necho not python\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(script).digest()).rstrip(b"=").decode()
    (site / "tool-1.0.dist-info" / "RECORD").write_text(
        f"../../bin/tool,sha256={digest},{len(script)}\ntool/__init__.py,sha256=abc,1\n"
    )
    return site


def _normalized(site):
    deps_layer.normalize_site(site)
    return (site / "bin" / "tool").read_bytes(), (
        site / "tool-1.0.dist-info" / "RECORD"
    ).read_text()


def test_a_plain_shebang_and_the_long_path_wrapper_normalize_to_the_same_script(tmp_path):
    plain = _normalized(_site(tmp_path / "a", b"#!/home/me/.cache/pip-venv/bin/python\n"))
    wrapped = _normalized(
        _site(
            tmp_path / "b",
            b"#!/bin/sh\n'''exec' \"" + LONG_PYTHON.encode() + b'" "$0" "$@"\n\' \'\'\'\n',
        )
    )
    assert plain == wrapped
    script, record = plain
    assert script.startswith(b"#!/usr/bin/python3\nimport sys\n")


def test_record_lines_of_rewritten_scripts_match_their_new_content(tmp_path):
    site = _site(tmp_path, b"#!/tmp/x/bin/python\n")
    script, record = _normalized(site)
    digest = base64.urlsafe_b64encode(hashlib.sha256(script).digest()).rstrip(b"=").decode()
    assert record.splitlines() == [
        f"../../bin/tool,sha256={digest},{len(script)}",
        "tool/__init__.py,sha256=abc,1",
    ]
    assert (site / "bin" / "helper.sh").read_bytes() == b"#!/bin/bash\necho not python\n"
