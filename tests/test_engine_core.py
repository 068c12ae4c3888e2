"""The FuseSoC CAPI2 core written beside the engine's Verilog uses the flow API, not the tool API."""

from __future__ import annotations

from asqhw.hdl.engine.emit import core_text

SIDECAR = {"module": "asqhw_engine_x", "generator": "asq-hw 0.0", "spec_version": "1.1", "command": "asqhw verilog",
           "parameters": {"fmt": "post", "arch": "split", "lanes": 8}, "verilog": "asqhw_engine_x.v"}


def _target(text: str, name: str) -> list[str]:
    lines = text.split("targets:\n", 1)[1].splitlines()
    start = lines.index(f"  {name}:")
    body = []
    for line in lines[start + 1:]:
        if not line.startswith("    "):
            break
        body.append(line.strip())
    return body


def test_the_core_is_capi2_and_names_the_verilog_file():
    text = core_text(SIDECAR)
    assert text.startswith("CAPI=2:\n")
    assert "      - asqhw_engine_x.v\n    file_type: verilogSource\n" in text


def test_the_lint_target_runs_the_lint_flow_in_verilator_with_all_warnings():
    lint = _target(core_text(SIDECAR), "lint")
    assert "flow: lint" in lint and "tool: verilator" in lint and "verilator_options: [-Wall]" in lint
    assert "toplevel: asqhw_engine_x" in lint


def test_no_target_uses_the_deprecated_tool_api():
    text = core_text(SIDECAR)
    assert "default_tool" not in text and "tools:" not in text
