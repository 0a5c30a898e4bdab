"""Claude Desktop's entry, in process: the merge keeps every other key, the write is whole or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalyst_mcp.config import Settings
from catalyst_mcp.desktop import desktop_entry, merged, server_command, write_entry
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.roles import Role


def test_the_command_is_absolute_and_starts_the_server() -> None:
    command, args = server_command()
    assert Path(command).is_absolute()
    assert args in (["serve"], ["-m", "catalyst_mcp", "serve"])


def test_the_entry_names_the_database_url_when_set_else_the_data_dir(tmp_path: Path) -> None:
    by_url = desktop_entry(Settings(database_url="postgresql://u@h/db"), Role.SUPERVISOR)["env"]
    assert by_url["CATALYST_DATABASE_URL"] == "postgresql://u@h/db" and "CATALYST_DATA_DIR" not in by_url
    assert by_url["CATALYST_ROLE"] == "supervisor"
    by_dir = desktop_entry(Settings(data_dir=tmp_path), Role.OBSERVER, config=tmp_path / "c.toml")["env"]
    assert by_dir["CATALYST_DATA_DIR"] == str(tmp_path) and by_dir["CATALYST_CONFIG"] == str(tmp_path / "c.toml")


@pytest.mark.parametrize("existing", [None, "", "  \n"])
def test_no_file_or_an_empty_one_becomes_a_config_with_the_entry(existing: str | None) -> None:
    assert merged(existing, {"command": "c"}) == ({"mcpServers": {"catalyst": {"command": "c"}}}, False)


def test_the_merge_replaces_only_its_own_entry() -> None:
    text = json.dumps({"mcpServers": {"catalyst": {"command": "old"}, "x": {}}, "other": 1})
    document, replaced = merged(text, {"command": "new"})
    assert replaced and document == {"mcpServers": {"catalyst": {"command": "new"}, "x": {}}, "other": 1}


def test_a_file_that_cannot_be_read_is_named_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(InvalidInput, match=r"^cannot read .*config\.json: not UTF-8$"):
        write_entry(path, {"command": "c"})
    with pytest.raises(InvalidInput, match=r"^cannot read .*: "):
        write_entry(tmp_path, {"command": "c"})  # a directory


def test_a_failed_write_leaves_the_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"mcpServers": {}}')

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("catalyst_mcp.desktop.os.replace", full_disk)
    with pytest.raises(InvalidInput, match=r"^cannot write .*config\.json: No space left on device$"):
        write_entry(path, {"command": "c"})
    assert path.read_text() == '{"mcpServers": {}}' and [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_parent_that_is_a_file_is_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInput, match=r"^cannot write .*file/config\.json: "):
        write_entry(tmp_path / "file" / "config.json", {"command": "c"})
