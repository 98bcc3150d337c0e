"""Fetch the real data sets from their official sources: ``make data``.

    python -m data_prep.download [caltech101] [msd_hippocampus] [cifar10] [--data DIR]

With no name, every data set but CIFAR-10 is fetched; CIFAR-10 (about 160 MB, needed only
by the binary-vs-ternary classification table) is fetched when named.

Caltech-101 (Li, Andreeto, Ranzato, Perona; doi:10.22002/D1.20086) comes as
``caltech-101.zip`` holding ``101_ObjectCategories.tar.gz`` and ``Annotations.tar``.  The
download goes through pooch (caching, progress bar); both inner archives are checked
against their published md5 before anything is extracted, and only the airplanes with
their annotations and the nine other categories of the binary-vs-ternary table's CIFAR-10
stand-in are extracted, in the official layout, into ``DIR/caltech101``.  The
extraction happens in a temporary folder that is renamed into place at the end, so a
failed or interrupted run leaves nothing half-written.

The Medical Segmentation Decathlon's Task04 Hippocampus (Simpson et al. 2019,
arXiv:1902.09063) comes as ``Task04_Hippocampus.tar`` from the MONAI project's public
mirror of the Decathlon; pooch checks it against its published md5 as it downloads, and
its ``Task04_Hippocampus/`` folder (imagesTr, labelsTr, imagesTs, dataset.json) is
extracted, without the macOS ``._`` resource forks the archive carries, into
``DIR/msd_hippocampus`` the same way.

CIFAR-10 (Krizhevsky 2009) comes in its binary version as ``cifar-10-binary.tar.gz`` from
its authors' page; pooch checks it against its published md5 as it downloads, and its
``cifar-10-batches-bin/`` folder is extracted into ``DIR/cifar10/cifar-10-batches-bin`` the
same way (`data_prep.cifar10` reads it).
"""

import argparse
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pooch
from tqdm import tqdm

from data_prep import cifar10
from data_prep.caltech101 import CLASSIFICATION_CATEGORIES
from nengo_hybrid.paths import add_data_argument, data_dir

CALTECH101_URL = "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip?download=1"
CALTECH101_MD5 = {
    "101_ObjectCategories.tar.gz": "b224c7392d521a49829488ab0f1120d9",
    "Annotations.tar": "6f83eeb1f24d99cab4eb377263132c91",
}
# what is kept of each inner archive: the airplanes with their boxes (LocNet) and the ten
# categories of the CIFAR-10 stand-in (the binary-vs-ternary classification table)
CALTECH101_KEEP = {
    "101_ObjectCategories.tar.gz": tuple(f"101_ObjectCategories/{name}/"
                                         for name in CLASSIFICATION_CATEGORIES),
    "Annotations.tar": ("Annotations/Airplanes_Side_2/",),
}
CALTECH101_HELP = """\
Could not fetch Caltech-101: {error}

To get it by hand:
  1. download caltech-101.zip from https://doi.org/10.22002/D1.20086
     (the Caltech data record; it holds 101_ObjectCategories.tar.gz and Annotations.tar);
  2. put it at {cache}/caltech-101.zip and run `make data` again, or unpack it yourself so that
     {dest}/101_ObjectCategories/airplanes/image_0001.jpg and
     {dest}/Annotations/Airplanes_Side_2/annotation_0001.mat exist;
  3. or point NENGO_HYBRID_DATA (or --data / DATA=) at a folder that already holds caltech101/.
"""

MSD_HIPPOCAMPUS_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task04_Hippocampus.tar"
MSD_HIPPOCAMPUS_MD5 = "9d24dba78a72977dbd1d2e110310f31b"
MSD_HIPPOCAMPUS_TAR = "Task04_Hippocampus.tar"
MSD_HIPPOCAMPUS_TOP = "Task04_Hippocampus/"
MSD_HIPPOCAMPUS_HELP = """\
Could not fetch the Decathlon hippocampus (Task04): {error}

To get it by hand:
  1. download Task04_Hippocampus.tar from
     https://msd-for-monai.s3-us-west-2.amazonaws.com/Task04_Hippocampus.tar
     (or from http://medicaldecathlon.com/, the Decathlon's own page);
     its md5 is 9d24dba78a72977dbd1d2e110310f31b (check with `md5sum Task04_Hippocampus.tar`);
  2. put it at {cache}/Task04_Hippocampus.tar and run `make data` again, or unpack it yourself
     (`tar xf Task04_Hippocampus.tar`) and rename its Task04_Hippocampus folder so that
     {dest}/imagesTr/hippocampus_001.nii.gz and
     {dest}/labelsTr/hippocampus_001.nii.gz exist;
  3. or point NENGO_HYBRID_DATA (or --data / DATA=) at a folder that already holds msd_hippocampus/.
"""

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_TAR = "cifar-10-binary.tar.gz"
CIFAR10_TOP = f"{cifar10.BATCHES_DIR}/"
CIFAR10_HELP = """\
Could not fetch CIFAR-10: {error}

To get it by hand:
  1. download cifar-10-binary.tar.gz (the binary version, not the Python or MATLAB one) from
     https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
     (listed on https://www.cs.toronto.edu/~kriz/cifar.html);
     its md5 is c32a1d4ab5d03f1284b67883e8d87530 (check with `md5sum cifar-10-binary.tar.gz`);
  2. put it at {cache}/cifar-10-binary.tar.gz and run `python -m data_prep.download cifar10` again,
     or unpack it yourself (`tar xzf cifar-10-binary.tar.gz`) so that
     {dest}/cifar-10-batches-bin/data_batch_1.bin exists;
  3. or point NENGO_HYBRID_DATA (or --data / DATA=) at a folder that already holds cifar10/.
"""


class DownloadError(RuntimeError):
    """The archive could not be fetched or failed its checksum."""


def _member(archive, name):
    """The zip member whose file name is ``name`` (the zip may nest a top folder)."""
    for member in archive.namelist():
        if Path(member).name == name and not member.startswith("__MACOSX"):
            return member
    raise DownloadError(f"{archive.filename}: has no {name}")


def _extract_subtree(tar_path, prefix, dest):
    """Extract the members of ``tar_path`` under ``prefix`` (a folder path, or a tuple
    of them) into ``dest``."""
    with tarfile.open(tar_path) as tar:
        members = [
            m for m in tar.getmembers()
            if m.name.lstrip("./").startswith(prefix) and (m.isfile() or m.isdir())
            # macOS resource forks (._name) ride along in archives made on a Mac; never data
            and not Path(m.name).name.startswith("._")
        ]
        if not members:
            raise DownloadError(f"{tar_path}: has nothing under {prefix}")
        for member in tqdm(members, desc=f"extracting {prefix if isinstance(prefix, str) else tar_path.name}",
                           unit="file"):
            member.name = member.name.lstrip("./")
            if ".." in Path(member.name).parts:
                raise DownloadError(f"{tar_path}: unsafe member name {member.name}")
            tar.extract(member, dest)


def _present(dest):
    if dest.exists():
        print(f"{dest} exists; nothing to do")
        return True
    return False


def _retrieve(url, fname, cache, known_hash=None):
    """The archive at ``url``, through pooch's cache in ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    try:
        return Path(pooch.retrieve(url, known_hash=known_hash, fname=fname, path=cache, progressbar=True))
    except Exception as err:  # requests/urllib errors, HTTP errors, a failed known_hash (ValueError)
        raise DownloadError(f"{url}: {err}") from err


def fetch_caltech101(data, url=CALTECH101_URL, md5=CALTECH101_MD5):
    """Download and extract the Caltech-101 airplanes (with their boxes) and the nine
    other categories of `data_prep.caltech101.CLASSIFICATION_CATEGORIES` into
    ``data/caltech101``.

    Does nothing if ``data/caltech101`` already exists.  Returns its path.
    """
    data = Path(data)
    dest = data / "caltech101"
    if _present(dest):
        return dest
    zip_path = _retrieve(url, "caltech-101.zip", data / ".downloads")

    with tempfile.TemporaryDirectory(dir=data, prefix=".caltech101.partial-") as tmp:
        tmp = Path(tmp)
        with zipfile.ZipFile(zip_path) as archive:
            for name, expected in md5.items():
                inner = tmp / name
                with archive.open(_member(archive, name)) as src, open(inner, "wb") as out:
                    shutil.copyfileobj(src, out)
                actual = pooch.file_hash(str(inner), alg="md5")
                if actual != expected:
                    raise DownloadError(
                        f"{zip_path}: {name} has md5 {actual}, expected {expected} "
                        f"(corrupt or changed download; delete {zip_path} and retry)"
                    )
        staged = tmp / "caltech101"
        for name, prefix in CALTECH101_KEEP.items():
            _extract_subtree(tmp / name, prefix, staged)
        staged.rename(dest)  # atomic: dest appears complete or not at all
    print(f"Caltech-101 airplanes and the stand-in's categories are in {dest}")
    return dest


def fetch_msd_hippocampus(data, url=MSD_HIPPOCAMPUS_URL, md5=MSD_HIPPOCAMPUS_MD5):
    """Download and extract the Decathlon's Task04 Hippocampus into
    ``data/msd_hippocampus`` (its ``imagesTr``, ``labelsTr``, ``imagesTs``, ``dataset.json``).

    Does nothing if ``data/msd_hippocampus`` already exists.  Returns its path.
    """
    def check(staged):
        return [] if (staged / "imagesTr").is_dir() else [f"{MSD_HIPPOCAMPUS_TOP}imagesTr"]

    dest = _fetch_tar_folder(data, "msd_hippocampus", url, md5, MSD_HIPPOCAMPUS_TAR, MSD_HIPPOCAMPUS_TOP,
                             staged_name=MSD_HIPPOCAMPUS_TOP, check=check)
    print(f"Decathlon hippocampus volumes are in {dest}")
    return dest


def fetch_cifar10(data, url=CIFAR10_URL, md5=CIFAR10_MD5):
    """Download and extract CIFAR-10's binary version into
    ``data/cifar10/cifar-10-batches-bin`` (its six batches and ``batches.meta.txt``).

    Does nothing if ``data/cifar10`` already exists.  Returns its path.
    """
    def check(staged):
        return [CIFAR10_TOP + name for name in cifar10.missing_files(staged / cifar10.BATCHES_DIR)]

    dest = _fetch_tar_folder(data, "cifar10", url, md5, CIFAR10_TAR, CIFAR10_TOP, staged_name="cifar10",
                             check=check, into_staged=True)
    print(f"CIFAR-10 (binary version) is in {dest / cifar10.BATCHES_DIR}")
    return dest


def _fetch_tar_folder(data, name, url, md5, tar_name, top, staged_name, check, into_staged=False):
    """Download the tarball ``tar_name`` (md5-checked by pooch as it downloads), extract
    its ``top`` subtree in a temporary folder, and rename ``staged_name`` there into
    ``data/name`` once ``check(staged)`` lists nothing missing: ``data/name`` appears
    complete or not at all.  ``into_staged`` extracts into the staged folder (keeping
    ``top`` inside it) rather than beside it.  Nothing is done if ``data/name`` exists."""
    data = Path(data)
    dest = data / name
    if _present(dest):
        return dest
    # pooch checks the md5 and deletes a download that fails it
    tar_path = _retrieve(url, tar_name, data / ".downloads", known_hash=f"md5:{md5}")
    with tempfile.TemporaryDirectory(dir=data, prefix=f".{name}.partial-") as tmp:
        staged = Path(tmp) / staged_name
        _extract_subtree(tar_path, top, staged if into_staged else Path(tmp))
        missing = check(staged)
        if missing:
            raise DownloadError(f"{tar_path}: has no {', '.join(missing)}")
        staged.rename(dest)  # atomic: dest appears complete or not at all
    return dest


# fetched by `make data` (no name given), keyed by the folder each one fills under the data directory
FETCHERS = {"caltech101": fetch_caltech101, "msd_hippocampus": fetch_msd_hippocampus}
HELP = {"caltech101": CALTECH101_HELP, "msd_hippocampus": MSD_HIPPOCAMPUS_HELP}
# fetched only when named, keyed the same way: CIFAR-10 is about 160 MB that only the
# binary-vs-ternary classification table needs, so `make data` leaves it out
ON_REQUEST = {"cifar10": fetch_cifar10}
ON_REQUEST_HELP = {"cifar10": CIFAR10_HELP}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fetchers = {**FETCHERS, **ON_REQUEST}
    help_texts = {**HELP, **ON_REQUEST_HELP}
    parser.add_argument("datasets", nargs="*", metavar="DATASET",
                        help=f"any of {sorted(fetchers)} (default: {sorted(FETCHERS)})")
    add_data_argument(parser)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.datasets) - set(fetchers))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {sorted(fetchers)}")
    data = data_dir(args.data)
    failed = 0
    # one unreachable source should not keep the others from being fetched
    for name in args.datasets or sorted(FETCHERS):
        try:
            fetchers[name](data)
        except (DownloadError, OSError, zipfile.BadZipFile, tarfile.TarError) as err:
            print(help_texts[name].format(error=err, cache=data / ".downloads", dest=data / name), file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
