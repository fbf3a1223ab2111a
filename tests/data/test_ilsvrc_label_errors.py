"""A flat val/ folder whose labels do not match: one clear message naming the
label file and line, exit status 2, no traceback, and nothing decoded."""
from __future__ import annotations

import pytest

from netdsl.cli import main
from netdsl.data.folder import scan_folder
from netdsl.errors import NetDslError

from test_ilsvrc_layouts import VAL_CLASSES, VAL_FILES, WNIDS, ilsvrc, with_kaggle, with_list, with_truth


@pytest.fixture
def flat(tmp_path):
    return ilsvrc(tmp_path / "ilsvrc")


def listing(root, lines):
    path = root / "val.txt"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def good_lines():
    return [f"{f} {WNIDS[c]}" for f, c in zip(VAL_FILES, VAL_CLASSES)]


def prepare_error(root, capsys) -> str:
    """What `netdsl prepare` says, checking the exit status, the absent traceback and
    that no cache was built (the error comes before any decoding)."""
    assert main(["prepare", str(root), "--size", "8", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert not (root / ".netdsl-cache" / "8").exists()
    return err


def test_flat_val_without_any_label_file_names_the_files_looked_for(flat, capsys):
    err = prepare_error(flat, capsys)
    first = err.splitlines()[0]
    assert first.startswith(f"error: {flat / 'val'} holds 6 images and no class folders")
    for name in ("val.txt", "labels.txt", "LOC_val_solution.csv", "ILSVRC2012_validation_ground_truth.txt"):
        assert name in first
    assert str(flat / "ILSVRC2012_devkit_t12" / "data") in first


def test_val_image_without_a_label(flat, capsys):
    path = listing(flat, good_lines()[:-1])
    err = prepare_error(flat, capsys)
    assert err.startswith(f"error: 1 of 6 validation images have no label in {path} ({VAL_FILES[-1]})")


def test_label_naming_a_class_training_lacks(flat, capsys):
    lines = good_lines()
    lines[2] = f"{VAL_FILES[2]}   n09999999"
    path = listing(flat, lines)
    err = prepare_error(flat, capsys)
    assert err.startswith(f"{path}:3:{len(VAL_FILES[2]) + 4}: error: class `n09999999` of `{VAL_FILES[2]}` "
                          "is not a training class (train/ has 3: n01440764, n01443537, n01484850)")


def test_label_naming_a_file_that_is_not_there(flat, capsys):
    path = listing(flat, good_lines() + ["ILSVRC2012_val_00000099.JPEG n01440764"])
    err = prepare_error(flat, capsys)
    assert err.startswith(f"{path}:7:1: error: labels `ILSVRC2012_val_00000099.JPEG`, which is not in {flat / 'val'}")


def test_file_labelled_twice(flat, capsys):
    path = listing(flat, good_lines() + [f"{VAL_FILES[0]} n01443537"])
    err = prepare_error(flat, capsys)
    assert err.startswith(f"{path}:7:1: error: `{VAL_FILES[0]}` is labelled twice (first on line 1)")


def test_malformed_list_line(flat, capsys):
    path = listing(flat, good_lines()[:3] + [VAL_FILES[3]] + good_lines()[4:])
    assert prepare_error(flat, capsys).startswith(f"{path}:4:1: error: expected `FILE CLASS`, found 1 field(s)")


def test_kaggle_file_without_its_header(flat, capsys):
    with_kaggle(flat)
    path = flat / "LOC_val_solution.csv"
    path.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n")
    assert prepare_error(flat, capsys).startswith(f"{path}:1:1: error: expected the header `ImageId,PredictionString`")


def test_kaggle_row_naming_a_class_training_lacks(flat, capsys):
    with_kaggle(flat)
    path = flat / "LOC_val_solution.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ",n07777777 1 2 3 4"
    path.write_text("\n".join(lines) + "\n")
    err = prepare_error(flat, capsys)
    assert err.startswith(f"{path}:3:{len(lines[2].split(',')[0]) + 2}: error: class `n07777777`")


def test_ground_truth_without_the_devkit_meta_says_what_it_looked_for(flat, capsys):
    with_truth(flat)
    (flat / "meta.txt").unlink()
    err = prepare_error(flat, capsys)
    assert err.startswith(f"error: {flat / 'ILSVRC2012_validation_ground_truth.txt'} gives ILSVRC2012_IDs, and no "
                          "devkit meta maps them to class names: looked for meta.mat or meta.txt or "
                          "ILSVRC2012_mapping.txt in")


def test_ground_truth_id_the_meta_lacks(flat, capsys):
    with_truth(flat)
    truth = flat / "ILSVRC2012_validation_ground_truth.txt"
    lines = truth.read_text().splitlines()
    lines[4] = "1000"
    truth.write_text("\n".join(lines) + "\n")
    assert prepare_error(flat, capsys).startswith(
        f"{truth}:5:1: error: ILSVRC2012_ID 1000 is not in {flat / 'meta.txt'}")


def test_ground_truth_with_more_lines_than_images(flat, capsys):
    with_truth(flat)
    truth = flat / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text(truth.read_text() + "1\n")
    assert prepare_error(flat, capsys).startswith(
        f"{truth}:7:1: error: labels `ILSVRC2012_val_00000007.JPEG`, which is not in {flat / 'val'}")


def test_train_with_both_class_folders_and_class_tars_is_refused(tmp_path):
    root = with_list(ilsvrc(tmp_path / "ilsvrc", tars=True))
    (root / "train" / "n01440764").mkdir()
    with pytest.raises(ValueError, match=r"holds both class folders \(n01440764\) and class tars"):
        scan_folder(root)


def test_compressed_class_tar_is_refused(tmp_path):
    root = with_list(ilsvrc(tmp_path / "ilsvrc", tars=True))
    tar = root / "train" / "n01440764.tar"
    tar.write_bytes(b"\x1f\x8b" + b"\0" * 100)  # gzip magic: not an uncompressed tar
    with pytest.raises(ValueError, match=f"cannot read the class tar {tar}"):
        scan_folder(root)


def test_training_on_a_flat_val_without_labels_stops_before_the_run(flat, tmp_path, capsys, monkeypatch):
    """Before, this trained without a word and reported a validation error of nan%."""
    monkeypatch.setenv("NETDSL_CACHE", str(tmp_path / "cache"))
    net = tmp_path / "tiny.net"
    from test_ilsvrc_layouts import TINY
    net.write_text(TINY)
    assert main(["train", str(net), "--data", str(flat), "--out", str(tmp_path / "run"),
                 "--backend", "reference", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no label file was found" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_scan_raises_the_positioned_error(flat):
    listing(flat, good_lines()[:1] + ["ILSVRC2012_val_00000002.JPEG n0"])
    with pytest.raises(NetDslError) as caught:
        scan_folder(flat)
    assert (caught.value.pos.line, caught.value.pos.column) == (2, 30)


def test_class_numbers_are_refused_with_a_hint(flat, capsys):
    """Caffe's val.txt gives class numbers; matching is by name, so a number is not guessed at."""
    path = listing(flat, [f"{f} {c}" for f, c in zip(VAL_FILES, VAL_CLASSES)])
    err = prepare_error(flat, capsys)
    assert err.startswith(f"{path}:1:30: error: class `2` of `{VAL_FILES[0]}` is not a training class")
    assert "hint: classes are matched by name (the train/ folder or tar name), never by number" in err


def test_meta_mat_without_scipy_asks_for_scipy_or_a_text_export(flat, capsys, monkeypatch):
    with_truth(flat)
    (flat / "meta.txt").rename(flat / "meta.mat")  # never opened: scipy is "missing"
    monkeypatch.setattr("netdsl.data.devkit._has_scipy", lambda: False)
    err = prepare_error(flat, capsys)
    assert err.startswith(f"error: {flat / 'meta.mat'} is a MATLAB file, and reading it needs scipy")
    assert "hint: pip install scipy, or export it as meta.txt: `ILSVRC2012_ID WNID` per line" in err


def test_columns_count_from_the_start_of_an_indented_line(flat):
    listing(flat, good_lines()[:1] + ["  ILSVRC2012_val_00000002.JPEG  n0"])
    with pytest.raises(NetDslError) as caught:
        scan_folder(flat)
    assert (caught.value.pos.line, caught.value.pos.column) == (2, 33)
