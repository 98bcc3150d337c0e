"""Reading hippocampus volumes: the real Decathlon data (shapes, orientation, split, both
layouts, writing masks back), and one clear error per kind of bad input, from small
synthetic NIfTI files."""

import dataclasses
import shutil

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, ornt_transform

from data_prep.hippocampus import (
    DEFAULT_SIZE,
    DataError,
    load_slices,
    load_volume,
    load_volumes,
    msd_folders,
    save_mask,
    split_subjects,
    subjects,
    to_slices,
)


@pytest.fixture(scope="module")
def real(msd_root):
    """Every real subject, as volumes and as the default slices."""
    volumes = load_volumes(subjects(*msd_folders(msd_root)), progress=False)
    return volumes, to_slices(volumes)


def test_real_volumes_load_as_sagittal_slices_of_the_fixed_size(real):
    volumes, slices = real
    n = len(volumes)
    assert n >= 200
    assert all(v.subject.id.startswith("hippocampus_") for v in volumes)
    depth, height, width = DEFAULT_SIZE
    assert height % 8 == 0 and width % 8 == 0  # three 2x2 poolings
    assert slices.images.shape == slices.masks.shape == (n * depth, height, width, 1)
    assert slices.images.dtype == slices.masks.dtype == np.float32
    assert 0 <= slices.images.min() and slices.images.max() <= 1
    assert set(np.unique(slices.masks)) == {0.0, 1.0}
    assert slices.slice_index.tolist() == list(range(depth)) * n
    assert slices.subject_ids[depth] == volumes[1].subject.id
    # slices beside the hippocampus have an empty mask and are kept
    empty = slices.masks.reshape(len(slices), -1).max(axis=1) == 0
    assert 0.2 < empty.mean() < 0.8
    for v in volumes:
        assert v.image.shape == v.label.shape == DEFAULT_SIZE
        assert set(np.unique(v.label)) == {0, 1, 2}
        # the default size crops no labelled voxel of any real volume
        on_disk = np.asanyarray(nib.load(v.subject.label).dataobj)
        assert np.count_nonzero(v.label) == np.count_nonzero(on_disk)


def test_restacked_slices_are_the_volumes(real):
    volumes, slices = real
    stacked = slices.restack()
    for v in volumes[:20]:
        np.testing.assert_array_equal(stacked[v.subject.id], v.mask)
    picked = slices.select([volumes[3].subject.id])
    np.testing.assert_array_equal(picked.restack(picked.images)[volumes[3].subject.id], volumes[3].image)
    # a subject with a slice missing cannot be restacked (its 3D Dice would be wrong)
    gap = dataclasses.replace(
        picked, images=picked.images[1:], masks=picked.masks[1:],
        subject_ids=picked.subject_ids[1:], slice_index=picked.slice_index[1:],
    )
    with pytest.raises(ValueError, match="needs 0..39"):
        gap.restack()


def reoriented_copy(subject, axcodes, folder):
    """The real volume of ``subject`` stored in another axis order (the same brain, the
    same world coordinates); returns the copy's `Subject`."""
    for kind in ("images", "labels"):
        src = nib.load(subject.image if kind == "images" else subject.label)
        to = ornt_transform(axcodes2ornt(nib.aff2axcodes(src.affine)), axcodes2ornt(axcodes))
        (folder / kind).mkdir(exist_ok=True)
        nib.save(src.as_reoriented(to), folder / kind / f"{subject.id}.nii.gz")
    return subjects(folder / "images", folder / "labels")[0]


def test_every_volume_is_read_in_canonical_orientation(real, tmp_path):
    volumes, _ = real
    original = volumes[5]
    copy = reoriented_copy(original.subject, ("P", "I", "L"), tmp_path)
    assert nib.aff2axcodes(nib.load(copy.image).affine) == ("P", "I", "L")
    assert nib.load(copy.image).shape != nib.load(original.subject.image).shape
    again = load_volume(copy)
    np.testing.assert_array_equal(again.image, original.image)
    np.testing.assert_array_equal(again.label, original.label)
    # and a mask goes back in the copy's own axis order
    save_mask(again.label, copy, tmp_path / "out" / "mask.nii.gz")
    written = nib.load(tmp_path / "out" / "mask.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), np.asanyarray(nib.load(copy.label).dataobj))
    np.testing.assert_allclose(written.affine, nib.load(copy.image).affine)


def test_save_mask_undoes_the_fit_and_keeps_the_image_geometry(real, tmp_path):
    volumes, slices = real
    size = np.array(DEFAULT_SIZE)
    shapes = {v.subject.id: np.array(v.shape) for v in volumes}
    cropped = next(v for v in volumes if (shapes[v.subject.id] > size).sum() >= 2)
    padded = next(v for v in volumes if (shapes[v.subject.id] < size).all())
    restacked = slices.restack()
    for v in (cropped, padded):
        image = nib.load(v.subject.image)
        label = np.asanyarray(nib.load(v.subject.label).dataobj)
        # the label map, 0/1/2
        path = save_mask(v.label, v.subject, tmp_path / f"{v.subject.id}_label.nii.gz")
        written = nib.load(path)
        assert written.get_data_dtype() == np.uint8 and written.shape == image.shape
        np.testing.assert_array_equal(written.affine, image.affine)
        np.testing.assert_array_equal(np.asanyarray(written.dataobj), label)
        # the binary mask restacked from its slices, as (H, W, 1) predictions would be
        path = save_mask(restacked[v.subject.id][..., None], v, tmp_path / f"{v.subject.id}_mask.nii")
        np.testing.assert_array_equal(np.asanyarray(nib.load(path).dataobj), label > 0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_save_mask_refuses_probabilities(real, tmp_path):
    volumes, _ = real
    with pytest.raises(ValueError, match="threshold"):
        save_mask(volumes[0].mask * 0.7, volumes[0].subject, tmp_path / "m.nii.gz")


def test_split_is_by_subject_seeded_and_90_10(real):
    volumes, slices = real
    ids = [v.subject.id for v in volumes]
    train, test = split_subjects(ids, 0.1, seed=3)
    assert (train, test) == split_subjects(ids, 0.1, seed=3)
    assert split_subjects(ids, 0.1, seed=4)[1] != test
    assert len(test) == round(0.1 * len(ids)) and sorted(train + test) == sorted(ids)
    train_slices, test_slices = slices.select(train), slices.select(test)
    assert not set(train_slices.subject_ids) & set(test_slices.subject_ids)
    assert len(train_slices) + len(test_slices) == len(slices)
    assert len(test_slices) == len(test) * DEFAULT_SIZE[0]


def test_both_layouts_give_the_same_arrays(msd_root, tmp_path):
    """The Decathlon folders, and a user's own two folders of uncompressed .nii files."""
    picked = ["hippocampus_001", "hippocampus_017", "hippocampus_164"]
    images, labels = msd_folders(msd_root)
    for name, folder in (("images", images), ("masks", labels)):
        (tmp_path / name).mkdir()
        for i in picked:
            nib.save(nib.load(folder / f"{i}.nii.gz"), tmp_path / name / f"{i}.nii")
    msd = load_slices(images, labels, ids=picked)
    own = load_slices(tmp_path / "images", tmp_path / "masks")
    for field in ("images", "masks", "subject_ids", "slice_index"):
        np.testing.assert_array_equal(getattr(own, field), getattr(msd, field))
    # evaluation only: the same images, no masks
    unlabelled = load_slices(tmp_path / "images")
    assert unlabelled.masks is None
    np.testing.assert_array_equal(unlabelled.images, msd.images)


def test_zero_mean_scaling_and_other_sizes(msd_root):
    images, labels = msd_folders(msd_root)
    slices = load_slices(images, labels, ids=["hippocampus_001"], size=(40, 64, 48), axis=2, intensity="zero_mean")
    assert slices.images.shape == (48, 40, 64, 1)
    assert -1 <= slices.images.min() and slices.images.max() <= 1
    volume = slices.restack(slices.images)["hippocampus_001"]
    # its 35 x 51 x 35 voxels, centred (an odd margin puts the extra voxel before);
    # the padding around them is 0, i.e. the mean
    inside = (slice(3, 38), slice(7, 58), slice(7, 42))
    assert abs(volume[inside].mean()) < 1e-5 and volume[inside].std() > 0.1
    volume[inside] = 0
    assert not volume.any()
    with pytest.raises(ValueError, match="intensity"):
        load_slices(images, labels, ids=["hippocampus_001"], intensity="minmax")


def test_cropping_a_labelled_voxel_warns(msd_root):
    images, labels = msd_folders(msd_root)
    with pytest.warns(UserWarning, match=r"hippocampus_001.nii.gz: \d+ of \d+ hippocampus voxels .* cropped"):
        load_slices(images, labels, ids=["hippocampus_001"], size=(40, 24, 40))


# --- bad input, from small synthetic volumes ------------------------------------------------

SHAPE = (10, 12, 8)
SIZE = (16, 16, 16)


def write(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)


@pytest.fixture
def small(tmp_path):
    """Three synthetic subjects in two folders (``images/``, ``labels/``)."""
    rng = np.random.RandomState(0)
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for i in ("a", "b", "c"):
        write(tmp_path / "images" / f"{i}.nii.gz", rng.uniform(0, 500, SHAPE).astype(np.float32))
        label = np.zeros(SHAPE, np.uint8)
        label[3:6, 3:6, 2:4] = 1
        label[3:6, 6:9, 2:4] = 2
        write(tmp_path / "labels" / f"{i}.nii.gz", label)
    return tmp_path


def load(root):
    return load_slices(root / "images", root / "labels", size=SIZE)


def test_the_small_layout_loads(small):
    slices = load(small)
    assert sorted(set(slices.subject_ids)) == ["a", "b", "c"] and slices.images.shape == (48, 16, 16, 1)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="imagesTr: no such folder.*make data"):
        msd_folders(tmp_path)
    with pytest.raises(DataError, match="nowhere: no such folder"):
        load_slices(tmp_path / "nowhere")


def test_missing_label_folder(small):
    with pytest.raises(DataError, match="masks: no such folder"):
        load_slices(small / "images", small / "masks")


def test_empty_folder(small):
    for p in (small / "labels").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"labels: no NIfTI volumes"):
        load(small)


def test_image_without_label(small):
    (small / "labels" / "b.nii.gz").unlink()
    with pytest.raises(DataError, match=r"images/b.nii.gz: no label"):
        load(small)


def test_label_without_image(small):
    (small / "images" / "c.nii.gz").unlink()
    with pytest.raises(DataError, match=r"labels/c.nii.gz: label without its image"):
        load(small)


def test_resource_forks_are_skipped(small):
    for folder in ("images", "labels"):
        (small / folder / "._a.nii.gz").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (small / "images" / "._z.nii.gz").write_bytes(b"\x00\x05\x16\x07 resource fork")
    assert [s.id for s in subjects(small / "images", small / "labels")] == ["a", "b", "c"]
    assert len(load(small)) == 48


def test_an_empty_mask_is_valid(small):
    write(small / "labels" / "a.nii.gz", np.zeros(SHAPE, np.uint8))
    slices = load(small)
    assert slices.restack()["a"].sum() == 0 and slices.restack()["b"].sum() > 0


def test_label_of_another_shape(small):
    write(small / "labels" / "a.nii.gz", np.zeros((10, 12, 9), np.uint8))
    with pytest.raises(DataError, match=r"labels/a.nii.gz: shape \(10, 12, 9\) differs"):
        load(small)


def test_label_with_another_affine(small):
    shifted = np.eye(4)
    shifted[:3, 3] = [0, 2, 0]
    write(small / "labels" / "b.nii.gz", np.zeros(SHAPE, np.uint8), shifted)
    with pytest.raises(DataError, match=r"labels/b.nii.gz: affine differs"):
        load(small)


def test_truncated_volume(small):
    path = small / "images" / "b.nii.gz"
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DataError, match=r"images/b.nii.gz: truncated or corrupt"):
        load(small)


def test_not_a_nifti_file(small):
    (small / "labels" / "c.nii.gz").write_text("not a volume")
    with pytest.raises(DataError, match=r"labels/c.nii.gz: unreadable NIfTI"):
        load(small)


def test_volume_not_3d(small):
    write(small / "images" / "a.nii.gz", np.ones(SHAPE + (2,), np.float32))
    with pytest.raises(DataError, match=r"images/a.nii.gz: a 4D volume of shape \(10, 12, 8, 2\); expected 3D"):
        load(small)


def test_label_values_outside_0_1_2(small):
    label = np.zeros(SHAPE, np.uint8)
    label[2, 2, 2] = 3
    write(small / "labels" / "b.nii.gz", label)
    with pytest.raises(DataError, match=r"labels/b.nii.gz: label values \[3\] outside \[0, 1, 2\]"):
        load(small)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_voxels(small, bad):
    image = np.ones(SHAPE, np.float32)
    image[1, 2, 3] = bad
    write(small / "images" / "c.nii.gz", image)
    with pytest.raises(DataError, match=r"images/c.nii.gz: 1 NaN or infinite voxels"):
        load(small)


def test_nothing_is_written_into_the_data_folder(small):
    before = sorted(p.relative_to(small) for p in small.rglob("*"))
    load(small)
    assert sorted(p.relative_to(small) for p in small.rglob("*")) == before
    shutil.rmtree(small / "labels")
    assert load_slices(small / "images", size=SIZE).masks is None
