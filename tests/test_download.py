"""``make data``'s downloader, against a local HTTP server on 127.0.0.1 serving a small
archive built here in the official structure (the real one is not reachable from tests)."""

import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import pytest

from data_prep.caltech101 import ANNOTATION_DIR, IMAGE_DIR, image_ids
from data_prep.download import DownloadError, fetch_caltech101, main


def tar_bytes(files, gzip):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w") as tar:
        for name, path in files.items():
            tar.add(path, arcname=name)
    return buf.getvalue()


@pytest.fixture
def served_archive(data_root, tmp_path):
    """A caltech-101.zip with two airplanes (and one other category) served locally."""
    src = data_root / "caltech101"
    images = {f"101_ObjectCategories/airplanes/image_000{i}.jpg": src / IMAGE_DIR / f"image_000{i}.jpg" for i in (1, 2)}
    images["101_ObjectCategories/watch/image_0001.jpg"] = src / "101_ObjectCategories/watch/image_0001.jpg"
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


def test_fetch_extracts_only_airplanes_in_the_official_layout(served_archive, tmp_path):
    url, md5 = served_archive
    data = tmp_path / "data"
    dest = fetch_caltech101(data, url=url, md5=md5)
    assert dest == data / "caltech101"
    assert image_ids(dest) == ["0001", "0002"]
    assert not (dest / "101_ObjectCategories" / "watch").exists()
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
