"""The boot harness shares host paths the virtme-ng guest would hide behind a tmpfs."""

from __future__ import annotations

from pathlib import Path

from ci.bootverify import masked_shares


def test_paths_under_masked_dirs_are_shared_read_only() -> None:
    shares = masked_shares([Path("/var/tmp/clone"), Path("/tmp/venv"), Path("/var/tmp/clone")])
    assert shares == [
        "--rodir", "/var/tmp/clone=/var/tmp/clone",
        "--rodir", "/tmp/venv=/tmp/venv",
    ]  # fmt: skip


def test_paths_the_guest_sees_need_no_share() -> None:
    assert masked_shares([Path("/work/main"), Path("/root/.pyenv/versions/3.11.7")]) == []
