"""Manual loaders on small files written in the official formats: iNaturalist 2021 JSON,
CIFAR-100 python pickles, user CSV and Hierarchy JSON."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hierarchy_fixtures import REFERENCE_SIZES, reference_hierarchy, write_reference_csv

from hierarchies import HierarchyError, alignment_metrics, build_hierarchy
from hierarchies.manual import INAT2021_LEVELS, INAT2021_TAXONOMY, detect_format

# (supercategory, kingdom, phylum, class, order, family, genus, specific_epithet)
INAT_TAXA = [
    ("Plants", "Plantae", "Tracheophyta", "Magnoliopsida", "Fabales", "Fabaceae", "Abrus", "precatorius"),
    ("Plants", "Plantae", "Tracheophyta", "Magnoliopsida", "Fabales", "Fabaceae", "Acacia", "dealbata"),
    ("Plants", "Plantae", "Bryophyta", "Bryopsida", "Hypnales", "Hypnaceae", "Hypnum", "cupressiforme"),
    ("Fungi", "Fungi", "Basidiomycota", "Agaricomycetes", "Agaricales", "Amanitaceae", "Amanita", "muscaria"),
    ("Insects", "Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Danaus", "plexippus"),
    ("Insects", "Animalia", "Arthropoda", "Insecta", "Coleoptera", "Coccinellidae", "Coccinella", "septempunctata"),
    ("Arachnids", "Animalia", "Arthropoda", "Arachnida", "Araneae", "Araneidae", "Araneus", "diadematus"),
    ("Animalia", "Animalia", "Arthropoda", "Malacostraca", "Decapoda", "Cancridae", "Cancer", "pagurus"),
    ("Birds", "Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "merula"),
    ("Mammals", "Animalia", "Chordata", "Mammalia", "Carnivora", "Canidae", "Vulpes", "vulpes"),
    # A genus name used in two families: two taxa, not one.
    ("Mammals", "Animalia", "Chordata", "Mammalia", "Rodentia", "Muridae", "Vulpes", "murina"),
]  # fmt: skip


def write_inat(path, taxa=INAT_TAXA, images_per_category=(3, 1, 2)):
    categories, images, annotations = [], [], []
    for cid, (sup, *ranks) in enumerate(taxa):
        fields = dict(
            zip(("kingdom", "phylum", "class", "order", "family", "genus"), ranks[:6], strict=True)
        )
        categories.append(
            {
                "id": cid,
                "name": f"{ranks[5]} {ranks[6]}",
                "common_name": f"common {cid}",
                "supercategory": sup,
                **fields,
                "specific_epithet": ranks[6],
                "image_dir_name": f"{cid:05d}_{'_'.join(ranks)}",
            }
        )
        for _ in range(images_per_category[cid % len(images_per_category)]):
            image_id = len(images)
            images.append({"id": image_id, "file_name": f"train/{cid:05d}/{image_id}.jpg"})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": cid})
    # Categories out of id order, as nothing in the format promises an order.
    data = {
        "info": {"year": 2021},
        "images": images,
        "categories": categories[::-1],
        "annotations": annotations,
        "licenses": [],
    }
    path.write_text(json.dumps(data))
    return path


def test_inat2021_levels_sizes_and_counts(tmp_path):
    h = build_hierarchy("manual", path=write_inat(tmp_path / "train_mini.json"))
    assert h.level_names == list(INAT2021_LEVELS)
    # kingdom 3, supercategory 7, class 8, order 10, family 10, genus 11 (a homonym), species 11
    assert h.level_sizes() == [3, 7, 8, 10, 10, 11, 11]
    assert h.leaf_names[0] == "Abrus precatorius"
    assert h.node_names[h.level_index("supercategory")][h.mapping("supercategory")[9]] == "Mammals"
    assert h.meta["leaf_example_counts"][:4] == [3, 1, 2, 3]
    # Supercategory is the target: every finer level is aligned with it.
    target = h.mapping("supercategory")
    for level in INAT2021_LEVELS[2:]:
        assert alignment_metrics(h.mapping(level), target)["cond_entropy"] == 0.0


def test_inat2021_taxonomy_levels_and_homonym_genera(tmp_path):
    path = write_inat(tmp_path / "val.json")
    h = build_hierarchy("manual", path=path, format="inat2021", levels=INAT2021_TAXONOMY)
    assert h.level_names == list(INAT2021_TAXONOMY)
    assert h.level_sizes() == [3, 5, 8, 10, 10, 11, 11]
    genus = h.mapping("genus")
    assert genus[9] != genus[10]  # Vulpes (Canidae) and Vulpes (Muridae)


def test_inat2021_supercategory_that_does_not_nest_is_named(tmp_path):
    taxa = [list(t) for t in INAT_TAXA]
    taxa[5][0] = "Arachnids"  # an insect species filed under Arachnids: class Insecta splits
    path = write_inat(tmp_path / "bad.json", taxa=[tuple(t) for t in taxa])
    with pytest.raises(HierarchyError, match="do not nest.*levels="):
        build_hierarchy("manual", path=path)


def test_inat2021_missing_field_is_named(tmp_path):
    path = write_inat(tmp_path / "train.json")
    data = json.loads(path.read_text())
    del data["categories"][2]["genus"]
    path.write_text(json.dumps(data))
    with pytest.raises(HierarchyError, match="lacks the field 'genus'"):
        build_hierarchy("manual", path=path)


def write_cifar100(folder, *, with_train=True):
    """The python-version layout: pickles written by Python 2, i.e. byte-string keys and names."""
    folder.mkdir(parents=True, exist_ok=True)
    fine_names = [f"fine{i}".encode() for i in range(100)]
    coarse_names = [f"coarse{i}".encode() for i in range(20)]
    with (folder / "meta").open("wb") as handle:
        pickle.dump(
            {b"fine_label_names": fine_names, b"coarse_label_names": coarse_names},
            handle,
            protocol=2,
        )
    rng = np.random.default_rng(0)
    coarse_of_fine = rng.permutation(np.repeat(np.arange(20), 5))
    fine = np.concatenate([np.arange(100), rng.integers(0, 100, size=200)])
    if with_train:
        with (folder / "train").open("wb") as handle:
            pickle.dump(
                {
                    b"filenames": [b"x.png"] * fine.size,
                    b"batch_label": b"training batch 1 of 1",
                    b"fine_labels": fine.tolist(),
                    b"coarse_labels": coarse_of_fine[fine].tolist(),
                    b"data": np.zeros((fine.size, 3072), dtype=np.uint8),
                },
                handle,
                protocol=2,
            )
    return coarse_of_fine, np.bincount(fine, minlength=100)


def test_cifar100_coarse_of_fine_from_train(tmp_path):
    coarse_of_fine, counts = write_cifar100(tmp_path / "cifar-100-python")
    for path in (tmp_path / "cifar-100-python", tmp_path / "cifar-100-python" / "meta"):
        h = build_hierarchy("manual", path=path)
        assert h.level_names == ["coarse", "fine"]
        assert h.level_sizes() == [20, 100]
        assert h.leaf_names[7] == "fine7"
        np.testing.assert_array_equal(h.mapping("coarse"), coarse_of_fine)
        assert h.node_names[0][coarse_of_fine[7]] == f"coarse{coarse_of_fine[7]}"
        assert h.meta["leaf_example_counts"] == counts.tolist()


def test_cifar100_without_train_names_the_missing_file(tmp_path):
    write_cifar100(tmp_path / "c", with_train=False)
    with pytest.raises(FileNotFoundError, match="'train' \\(or 'test'\\) not found"):
        build_hierarchy("manual", path=tmp_path / "c", format="cifar100")


def test_cifar100_rejects_a_file_that_is_not_a_pickle(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "meta").write_text("not a pickle")
    with pytest.raises(HierarchyError, match="not a CIFAR-100 python pickle"):
        build_hierarchy("manual", path=tmp_path / "c")


def test_csv_loads_the_tree(tmp_path):
    h = build_hierarchy("manual", path=write_reference_csv(tmp_path / "tree.csv"), format="csv")
    ref = reference_hierarchy()
    assert h.level_sizes() == REFERENCE_SIZES
    assert h.leaf_names == ref.leaf_names
    assert h.content_hash() == ref.content_hash()


def test_csv_name_under_two_parents_is_an_error_naming_the_leaf(tmp_path):
    path = tmp_path / "tree.csv"
    path.write_text("animal,species\nmammal,cat\nbird,robin\nmammal,dog\nfish,cat2\n")
    assert build_hierarchy("manual", path=path).level_sizes() == [3, 4]
    path.write_text("coarse,mid,leaf\na,x,l1\na,y,l2\nb,x,l3\n")
    with pytest.raises(HierarchyError, match="not a coarsening.*'l3'|not a coarsening.*'l1'"):
        build_hierarchy("manual", path=path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("coarse,leaf\n", "a header and one row per leaf"),
        ("coarse,leaf\na,x\nb\n", "line 3: expected 2 non-empty cells"),
        ("coarse,leaf\na,x\nb,x\n", "leaf 'x' appears in two rows"),
    ],
)
def test_malformed_csv_names_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(HierarchyError, match=message):
        build_hierarchy("manual", path=path)


def test_hierarchy_json_through_manual(tmp_path):
    ref = reference_hierarchy()
    path = ref.save(tmp_path / "h.json")
    assert detect_format(path) == "json"
    assert build_hierarchy("manual", path=path).content_hash() == ref.content_hash()


def test_manual_rejects_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(HierarchyError, match="unknown manual format 'xml'; accepted"):
        build_hierarchy("manual", path=write_reference_csv(tmp_path / "t.csv"), format="xml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_hierarchy("manual", path=tmp_path / "missing.csv")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(HierarchyError, match="cannot tell the format"):
        build_hierarchy("manual", path=tmp_path / "t.txt")


@pytest.mark.parametrize("fmt", ["inat2021", "auto"])
def test_inat2021_root_folder_is_read_from_its_annotation_file(tmp_path, fmt):
    write_inat(tmp_path / "train_mini.json")
    from_file = build_hierarchy("manual", path=tmp_path / "train_mini.json")
    from_root = build_hierarchy("manual", path=tmp_path, format=fmt)
    assert from_root.content_hash() == from_file.content_hash()


def test_inat2021_root_without_annotations_names_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds none of train.json, train_mini.json"):
        build_hierarchy("manual", path=tmp_path, format="inat2021")
