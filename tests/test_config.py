import pytest
import torch

from dbrepro.config import PROFILES, get_profile, resolve_device, scaled_milestones


def test_profiles_defined_once():
    assert set(PROFILES) == {"smoke", "cpu", "paper", "rehearsal"}
    assert get_profile("cpu") is PROFILES["cpu"]
    assert get_profile("CPU") is PROFILES["cpu"]


def test_unknown_profile_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown profile 'gpu'.*smoke, cpu, paper"):
        get_profile("gpu")


def test_paper_profile_has_the_papers_settings():
    p = get_profile("paper")
    assert (p.image_size, p.embedding_size, p.epochs, p.batch_size) == (112, 512, 15, 256)
    assert p.milestones == (5, 8, 11)
    assert p.backbone in ("ir18", "ir50")


def test_a_profile_may_state_its_own_schedule():
    cpu = get_profile("cpu")
    assert cpu.lr_milestones is not None and cpu.milestones == cpu.lr_milestones
    assert max(cpu.milestones) <= cpu.epochs - 2  # two epochs at the lowest rate: the loss ends on a plateau (C1)
    assert get_profile("smoke").milestones == scaled_milestones(get_profile("smoke").epochs)
    assert get_profile("paper").replace(lr_milestones=(3,)).milestones == (3,)


def test_scaled_milestones():
    assert scaled_milestones(15) == (5, 8, 11)
    assert scaled_milestones(30) == (10, 16, 22)
    assert scaled_milestones(6) == (2, 3, 4)
    assert scaled_milestones(2) == (1,)
    assert scaled_milestones(1) == ()
    with pytest.raises(ValueError):
        scaled_milestones(0)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


def test_rehearsal_is_the_paper_path_made_small():
    paper, rehearsal = get_profile("paper"), get_profile("rehearsal")
    assert rehearsal.needs_data_path and paper.needs_data_path  # both read an InsightFace folder
    assert (rehearsal.image_size, rehearsal.backbone, rehearsal.backbone_large) == (112, "ir18", "ir50")
    assert rehearsal.num_workers > 0 and not rehearsal.numbers_meaningful


def test_the_profiles_and_the_book_cli_load_without_pytorch():
    """`python -m dbrepro.book build/check` and a refused `run` never need PyTorch (2-3 s of import per start);
    the device is resolved, and torch imported, only where a run is trained or evaluated."""
    import subprocess
    import sys

    code = ("import sys, dbrepro.config, dbrepro.book.cli; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
