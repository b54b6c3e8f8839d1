import pytest

from server.export import export_site
from server.settings import Settings


def test_export_refuses_to_overwrite_a_file_or_a_folder_that_is_not_an_export(build_dir, tmp_path):
    """A mistyped destination must not be deleted: a file, or a folder of other things, is left
    as it was and the command says why (no traceback)."""
    settings = Settings(build_dir=build_dir)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8")
    for dest, said in [(a_file, "is a file, not a folder"), (folder, "is not an earlier export")]:
        with pytest.raises(SystemExit, match=said):
            export_site(settings, dest, log=lambda line: None)
    assert a_file.read_text() == "keep me" and (folder / "a.jpg").read_bytes() == b"\xff\xd8"
