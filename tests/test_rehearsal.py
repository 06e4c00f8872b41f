"""The rehearsal folder is a real InsightFace folder, and the real-data path reads it like CASIA-WebFace."""

import numpy as np
import pytest

from dbrepro import chapter, recipes
from dbrepro.data import rehearsal, sources, specs
from dbrepro.data.base import IndexSubset
from dbrepro.data.formats import RecordIODataset, bin_suite


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("DBREPRO_CACHE", str(cache))
    root = rehearsal.write_folder(tmp_path_factory.mktemp("rehearsal"))
    yield root
    mp.undo()


def test_the_folder_holds_the_insightface_files_and_every_pack(folder):
    data = RecordIODataset(folder, image_size=112)
    assert data.layout == "insightface" and data.num_classes == 40 and data[0][0].shape == (3, 112, 112)
    for stem in [*sources.PACKS.values(), *(s for d in sources.DOMAIN_PACKS.values() for s in d.values())]:
        suite = bin_suite(folder / f"{stem}.bin", image_size=112)
        assert len(suite) >= 10 and suite.images.shape[1:] == (3, 112, 112)
    mtime = (folder / "train.rec").stat().st_mtime_ns
    rehearsal.write_folder(folder)  # complete: left as it is
    assert (folder / "train.rec").stat().st_mtime_ns == mtime


def test_a_split_of_an_on_disk_set_is_an_index_subset(folder):
    spec = sources.insightface(folder, "casia").train_spec
    full = specs.training_set(spec)
    a2 = specs.training_set({**spec, "split": "A-2"})
    assert isinstance(a2, IndexSubset) and len(a2) < len(full)
    assert a2.num_classes == len(np.unique(a2.labels)) and a2.labels.max() == a2.num_classes - 1
    image, label = a2[0]
    assert image.shape == (3, 112, 112) and 0 <= label < a2.num_classes
    decoded = a2.subset(np.arange(5)).decode()
    assert decoded.images.shape == (5, 3, 112, 112)


def test_a_paper_profile_chapter_reads_the_folder_and_never_the_synthetic_world(folder):
    with pytest.raises(ValueError, match="reads real data"):
        chapter.setup("x", "rehearsal")
    ch = chapter.setup("x", "rehearsal", data_root=str(folder))
    assert ch.world is None and ch.num_classes == 40 and "CASIA-WebFace" in repr(ch)
    assert str(folder) not in repr(ch)  # the banner names the data, not the build machine's path
    assert list(ch.suites(["lfw", "cplfw"])) == ["lfw", "cplfw"]
    assert list(ch.data.domain_suites("afw")) == ["young", "middle", "aged"]
    cfg = ch.config("db")
    assert cfg.data["kind"] == "recordio" and cfg.dfi.k == recipes.dfi_k(40) and cfg.image_size == 112
