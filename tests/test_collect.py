"""What study tables are made of: the error of a mean accuracy, the readers of a study's run files, the table writer."""

import json
import math

import pytest

from cvaezoo.collect import (
    accuracy_error,
    markdown_table,
    mean_error,
    read_by_model,
    read_dicts_csv,
    registered_models_in,
    seed_dirs,
    split_seed,
    write_dicts_csv,
)
from cvaezoo.errors import UserError


def test_accuracy_error_combines_the_seeds_spread_and_the_test_sets_binomial_error():
    # 0.4, 0.5, 0.6 on 200 examples: mean 0.5, variance 0.01 over 3 seeds, binomial 0.25 / 200
    assert accuracy_error([0.4, 0.5, 0.6], 200) == pytest.approx(math.sqrt(0.01 / 3 + 0.25 / 200))
    # one seed: the binomial error alone, the review's 0.035 at 0.4 on 200 images
    assert accuracy_error([0.4], 200) == pytest.approx(0.0346, abs=1e-4)
    assert accuracy_error([1.0, 1.0], 50) == 0.0
    assert mean_error([0.4, 0.5, 0.6], 200) == "0.500 ± 0.068" and mean_error([], 200) == "–"
    with pytest.raises(ValueError, match="n=0"):
        accuracy_error([0.5], 0)


def test_every_registered_model_has_the_display_name_the_study_tables_print():
    from cvaezoo.models import CVAE1, MODELS, ConditionalVAE

    assert {k: cls.display_name for k, cls in MODELS.items()} == {
        "cvae1": "CVAE-1", "cvae2": "CVAE-2", "cvae3": "CVAE-3", "cvae4": "CVAE-4", "m2": "M2", "vae": "VAE",
        "baseline": "NN (discriminative)", "gfz": "GFZ", "gbz": "GBZ", "dfz": "DFZ", "dbx": "DBX"}

    class MyCVAE(CVAE1):  # a subclass that names itself nothing is named by its registry key, not by its parent
        pass

    assert MyCVAE.display_name == "mycvae" and ConditionalVAE.display_name == "conditionalvae"


def test_split_seed_reads_the_study_run_names():
    assert split_seed("cvae1_s2") == ("cvae1", 2) and split_seed("q3_s10") == ("q3", 10)
    assert split_seed("cvae_wd_s0") == ("cvae_wd", 0)  # the last _s<digits> ends the name
    assert split_seed("s7") == ("", 7)
    assert [split_seed(n) for n in ("reference", "cvae1_s", "cvae1_sx", "s", "cvae1_s2.json", "xs3")] == [None] * 6


def test_seed_dirs_lists_run_directories_by_name_then_seed_as_a_number(tmp_path):
    for name in ("s10", "s2", "s0", "q2_s0", "q1_s1", "q1_s0", "reference"):
        (tmp_path / name).mkdir()
    (tmp_path / "s3").write_text("a file, not a run")
    assert seed_dirs(tmp_path) == [("", 0, tmp_path / "s0"), ("", 2, tmp_path / "s2"), ("", 10, tmp_path / "s10"),
                                   ("q1", 0, tmp_path / "q1_s0"), ("q1", 1, tmp_path / "q1_s1"), ("q2", 0, tmp_path / "q2_s0")]
    assert seed_dirs(tmp_path / "absent") == []


def test_read_by_model_groups_the_result_files_of_a_folder_by_model_in_seed_order(tmp_path):
    for name, accuracy in [("m2_s1", 0.5), ("m2_s0", 0.25), ("cvae1_s10", 0.75), ("cvae1_s2", 0.125), ("notes", 1.0)]:
        (tmp_path / f"{name}.json").write_text(json.dumps({"seed": name, "clean_accuracy": accuracy}))
    (tmp_path / "cvae1_s0.npz").write_bytes(b"not JSON")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "cvae4_s0.json").write_text("{}")  # below the folder: not read
    runs = read_by_model(tmp_path)
    assert list(runs) == ["cvae1", "m2"]
    assert [r["clean_accuracy"] for r in runs["cvae1"]] == [0.125, 0.75]  # s2 before s10
    assert [r["clean_accuracy"] for r in runs["m2"]] == [0.25, 0.5]
    assert read_by_model(tmp_path / "absent") == {}
    (tmp_path / "m2_s2.json").write_text('{"clean_accuracy": 0.')  # a run killed while writing
    with pytest.raises(UserError, match="m2_s2.json is not readable JSON"):
        read_by_model(tmp_path)


def test_read_dicts_csv_reads_back_what_write_dicts_csv_wrote(tmp_path):
    rows = [{"variant": "sweep", "model": "cvae1", "seed": 0, "pgd_0.05": 0.004999999888241291},
            {"variant": "bernoulli", "model": "m2", "seed": 2, "pgd_0.05": 0.47}]
    back = read_dicts_csv(write_dicts_csv(tmp_path / "results.csv", rows))
    assert back == [{"variant": "sweep", "model": "cvae1", "seed": "0", "pgd_0.05": "0.004999999888241291"},
                    {"variant": "bernoulli", "model": "m2", "seed": "2", "pgd_0.05": "0.47"}]
    assert float(back[0]["pgd_0.05"]) == rows[0]["pgd_0.05"]


def test_registered_models_in_lists_the_registrys_models_with_a_folder_in_registry_order(tmp_path):
    for name in ("cvae4", "reference", "cvae1", "baseline"):
        (tmp_path / name).mkdir()
    (tmp_path / "m2").write_text("a file")
    assert registered_models_in(tmp_path) == ["cvae1", "cvae4", "baseline"]


def test_markdown_table():
    assert markdown_table(["model", "ε=0.05"], [["CVAE-1", "0.002 ± 0.00"], ["M2 (classifier q)", "–"]]) == (
        "| model | ε=0.05 |\n|---|---|\n| CVAE-1 | 0.002 ± 0.00 |\n| M2 (classifier q) | – |\n")
