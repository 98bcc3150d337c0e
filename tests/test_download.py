"""``make data``'s downloader, against a local HTTP server on 127.0.0.1 serving a small
archive built here in the official structure (the real one is not reachable from tests)."""

import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from contextlib import contextmanager

import pytest

from data_prep.caltech101 import ANNOTATION_DIR, IMAGE_DIR, image_ids
from data_prep.download import DownloadError, fetch_caltech101, main
from data_prep.download import FETCHERS, HELP, fetch_msd_hippocampus
from data_prep.download import CIFAR10_MD5, CIFAR10_URL, ON_REQUEST, ON_REQUEST_HELP, fetch_cifar10
from data_prep.hippocampus import msd_folders, subjects


def tar_bytes(files, gzip):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w") as tar:
        for name, path in files.items():
            tar.add(path, arcname=name)
    return buf.getvalue()


@pytest.fixture
def served_archive(data_root, tmp_path):
    """A caltech-101.zip with two airplanes, a watch (a category of the classification
    stand-in) and an ant (a category nothing reads) served locally."""
    src = data_root / "caltech101"
    images = {f"101_ObjectCategories/airplanes/image_000{i}.jpg": src / IMAGE_DIR / f"image_000{i}.jpg" for i in (1, 2)}
    images["101_ObjectCategories/watch/image_0001.jpg"] = src / "101_ObjectCategories/watch/image_0001.jpg"
    images["101_ObjectCategories/ant/image_0001.jpg"] = src / "101_ObjectCategories/watch/image_0002.jpg"
    annotations = {
        f"Annotations/Airplanes_Side_2/annotation_000{i}.mat": src / ANNOTATION_DIR / f"annotation_000{i}.mat"
        for i in (1, 2)
    }
    inner = {
        "101_ObjectCategories.tar.gz": tar_bytes(images, gzip=True),
        "Annotations.tar": tar_bytes(annotations, gzip=False),
    }
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "caltech-101.zip", "w") as archive:
        for name, payload in inner.items():
            archive.writestr(f"caltech-101/{name}", payload)
    md5 = {name: hashlib.md5(payload).hexdigest() for name, payload in inner.items()}

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/caltech-101.zip", md5
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_extracts_the_airplanes_and_the_stand_in_categories_in_the_official_layout(
        served_archive, tmp_path):
    url, md5 = served_archive
    data = tmp_path / "data"
    dest = fetch_caltech101(data, url=url, md5=md5)
    assert dest == data / "caltech101"
    assert image_ids(dest) == ["0001", "0002"]
    assert (dest / "101_ObjectCategories" / "watch" / "image_0001.jpg").is_file()
    assert not (dest / "101_ObjectCategories" / "ant").exists()
    # a second call finds it and fetches nothing
    assert fetch_caltech101(data, url="http://127.0.0.1:9/unreachable", md5=md5) == dest


def test_a_wrong_checksum_fails_and_leaves_nothing_half_extracted(served_archive, tmp_path):
    url, md5 = served_archive
    data = tmp_path / "data"
    wrong = dict(md5, **{"Annotations.tar": "0" * 32})
    with pytest.raises(DownloadError, match="Annotations.tar has md5"):
        fetch_caltech101(data, url=url, md5=wrong)
    assert not (data / "caltech101").exists()
    assert not [p for p in data.iterdir() if p.name.startswith(".caltech101.partial")]


def test_an_unreachable_source_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("data_prep.download.CALTECH101_URL", "http://127.0.0.1:9/caltech-101.zip")
    monkeypatch.setattr(
        "data_prep.download.FETCHERS",
        {"caltech101": functools.partial(fetch_caltech101, url="http://127.0.0.1:9/caltech-101.zip")},
    )
    assert main(["--data", str(tmp_path)]) == 1  # no name: every data set
    err = capsys.readouterr().err
    assert "Could not fetch Caltech-101" in err and "doi.org/10.22002/D1.20086" in err
    assert not (tmp_path / "caltech101").exists()


# --- the Decathlon's Task04 Hippocampus ---------------------------------------------------

@contextmanager
def local_server(folder):
    """An HTTP server on 127.0.0.1 serving ``folder``; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served_hippocampus(data_root, tmp_path):
    """A Task04_Hippocampus.tar with two real subjects, the archive's macOS resource forks
    and its dataset.json, served locally; yields its URL and md5."""
    src = data_root / "msd_hippocampus"
    if not src.is_dir():
        pytest.skip(f"no {src}")
    files = {}
    for folder in ("imagesTr", "labelsTr"):
        for i in ("001", "003"):
            files[f"Task04_Hippocampus/{folder}/hippocampus_{i}.nii.gz"] = src / folder / f"hippocampus_{i}.nii.gz"
        fork = tmp_path / f"fork_{folder}"
        fork.write_bytes(b"\x00\x05\x16\x07 resource fork")  # AppleDouble magic, as in the real archive
        files[f"Task04_Hippocampus/{folder}/._hippocampus_001.nii.gz"] = fork
    manifest = tmp_path / "dataset.json"
    manifest.write_text('{"name": "Hippocampus", "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}}')
    files["Task04_Hippocampus/dataset.json"] = manifest
    served = tmp_path / "served"
    served.mkdir()
    payload = tar_bytes(files, gzip=False)
    (served / "Task04_Hippocampus.tar").write_bytes(payload)
    with local_server(served) as base:
        yield f"{base}/Task04_Hippocampus.tar", hashlib.md5(payload).hexdigest()


def test_fetch_hippocampus_extracts_the_decathlon_layout_without_resource_forks(served_hippocampus, tmp_path):
    url, md5 = served_hippocampus
    data = tmp_path / "data"
    dest = fetch_msd_hippocampus(data, url=url, md5=md5)
    assert dest == data / "msd_hippocampus"
    assert [s.id for s in subjects(*msd_folders(dest))] == ["hippocampus_001", "hippocampus_003"]
    assert (dest / "dataset.json").is_file()
    assert not list(dest.rglob("._*"))
    assert not [p for p in data.iterdir() if p.name.startswith(".msd_hippocampus.partial")]
    # a second call finds it and fetches nothing
    assert fetch_msd_hippocampus(data, url="http://127.0.0.1:9/unreachable", md5=md5) == dest


def test_a_wrong_hippocampus_checksum_fails_and_leaves_nothing_half_extracted(served_hippocampus, tmp_path):
    url, _ = served_hippocampus
    data = tmp_path / "data"
    with pytest.raises(DownloadError, match="(?i)md5"):
        fetch_msd_hippocampus(data, url=url, md5="0" * 32)
    assert not (data / "msd_hippocampus").exists()
    assert not [p for p in data.iterdir() if p.name.startswith(".msd_hippocampus.partial")]
    # pooch deletes a download that fails its checksum: nothing bad stays in the cache
    assert not (data / ".downloads" / "Task04_Hippocampus.tar").exists()


def test_an_unreachable_hippocampus_source_says_what_to_do(tmp_path, capsys, monkeypatch):
    unreachable = "http://127.0.0.1:9/Task04_Hippocampus.tar"
    monkeypatch.setattr(
        "data_prep.download.FETCHERS",
        {"msd_hippocampus": functools.partial(fetch_msd_hippocampus, url=unreachable)},
    )
    assert main(["msd_hippocampus", "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Could not fetch the Decathlon hippocampus" in err
    assert "9d24dba78a72977dbd1d2e110310f31b" in err and str(tmp_path / "msd_hippocampus" / "imagesTr") in err
    assert not (tmp_path / "msd_hippocampus").exists()


def test_make_data_fetches_every_data_set_and_goes_on_after_a_failure(tmp_path, monkeypatch):
    calls = []

    def failing(data):
        calls.append("caltech101")
        raise DownloadError("unreachable")

    monkeypatch.setattr(
        "data_prep.download.FETCHERS",
        {"caltech101": failing, "msd_hippocampus": lambda data: calls.append("msd_hippocampus")},
    )
    assert main(["--data", str(tmp_path)]) == 1
    assert calls == ["caltech101", "msd_hippocampus"]


def test_every_data_set_has_a_fetcher_and_manual_instructions():
    assert set(FETCHERS) == set(HELP) == {"caltech101", "msd_hippocampus"}


# --- CIFAR-10's binary version (fetched only when named) ------------------------------------

@pytest.fixture
def served_cifar10(tmp_path):
    """A cifar-10-binary.tar.gz in the official structure (one record per batch, a readme
    beside the batches) served locally; yields its URL and md5."""
    from data_prep.cifar10 import FILES, META_FILE

    written = tmp_path / "written"
    written.mkdir()
    files = {}
    for label, name in enumerate(FILES):
        path = written / name
        if name == META_FILE:
            path.write_text("\n".join(f"class{i}" for i in range(10)) + "\n\n")
        else:
            path.write_bytes(bytes([label]) + bytes(3072))
        files[f"cifar-10-batches-bin/{name}"] = path
    readme = written / "readme.html"
    readme.write_text("<html></html>")
    files["cifar-10-batches-bin/readme.html"] = readme
    served = tmp_path / "served"
    served.mkdir()
    payload = tar_bytes(files, gzip=True)
    (served / "cifar-10-binary.tar.gz").write_bytes(payload)
    with local_server(served) as base:
        yield f"{base}/cifar-10-binary.tar.gz", hashlib.md5(payload).hexdigest()


def test_fetch_cifar10_extracts_the_binary_version_where_its_reader_finds_it(served_cifar10, tmp_path):
    from data_prep.cifar10 import load_cifar10

    url, md5 = served_cifar10
    data = tmp_path / "data"
    dest = fetch_cifar10(data, url=url, md5=md5)
    assert dest == data / "cifar10"
    assert (dest / "cifar-10-batches-bin" / "data_batch_1.bin").is_file()
    loaded = load_cifar10(data)
    assert loaded.y_train.tolist() == [0, 1, 2, 3, 4] and loaded.y_test.tolist() == [5]
    assert not [p for p in data.iterdir() if p.name.startswith(".cifar10.partial")]
    # a second call finds it and fetches nothing
    assert fetch_cifar10(data, url="http://127.0.0.1:9/unreachable", md5=md5) == dest


def test_a_wrong_cifar10_checksum_fails_and_leaves_nothing_half_extracted(served_cifar10, tmp_path):
    url, _ = served_cifar10
    data = tmp_path / "data"
    with pytest.raises(DownloadError, match="(?i)md5"):
        fetch_cifar10(data, url=url, md5="0" * 32)
    assert not (data / "cifar10").exists()
    assert not [p for p in data.iterdir() if p.name.startswith(".cifar10.partial")]
    assert not (data / ".downloads" / "cifar-10-binary.tar.gz").exists()


def test_an_archive_lacking_a_batch_is_refused(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    batch = tmp_path / "data_batch_1.bin"
    batch.write_bytes(bytes(3073))
    payload = tar_bytes({"cifar-10-batches-bin/data_batch_1.bin": batch}, gzip=True)
    (served / "cifar-10-binary.tar.gz").write_bytes(payload)
    data = tmp_path / "data"
    with local_server(served) as base:
        with pytest.raises(DownloadError, match="has no cifar-10-batches-bin/data_batch_2.bin"):
            fetch_cifar10(data, url=f"{base}/cifar-10-binary.tar.gz", md5=hashlib.md5(payload).hexdigest())
    assert not (data / "cifar10").exists()


def test_an_unreachable_cifar10_source_says_what_to_do(tmp_path, capsys, monkeypatch):
    unreachable = "http://127.0.0.1:9/cifar-10-binary.tar.gz"
    monkeypatch.setattr(
        "data_prep.download.ON_REQUEST", {"cifar10": functools.partial(fetch_cifar10, url=unreachable)},
    )
    assert main(["cifar10", "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Could not fetch CIFAR-10" in err and "c32a1d4ab5d03f1284b67883e8d87530" in err
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in err
    assert str(tmp_path / "cifar10" / "cifar-10-batches-bin" / "data_batch_1.bin") in err
    assert not (tmp_path / "cifar10").exists()


def test_make_data_leaves_cifar10_out_unless_it_is_named(tmp_path, monkeypatch):
    calls = []

    def recorder(name):
        return lambda data: calls.append(name)

    monkeypatch.setattr("data_prep.download.FETCHERS", {name: recorder(name) for name in FETCHERS})
    monkeypatch.setattr("data_prep.download.ON_REQUEST", {"cifar10": recorder("cifar10")})
    assert main(["--data", str(tmp_path)]) == 0
    assert calls == sorted(FETCHERS)
    calls.clear()
    assert main(["cifar10", "caltech101", "--data", str(tmp_path)]) == 0
    assert calls == ["cifar10", "caltech101"]


def test_cifar10_is_fetched_on_request_with_manual_instructions_and_the_official_md5():
    assert set(ON_REQUEST) == set(ON_REQUEST_HELP) == {"cifar10"}
    assert not set(ON_REQUEST) & set(FETCHERS)
    assert CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    assert CIFAR10_MD5 == "c32a1d4ab5d03f1284b67883e8d87530"
