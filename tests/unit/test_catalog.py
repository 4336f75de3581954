"""The instance catalogs: what a request resolves to, and the shipped data itself."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from skytui.clouds.catalog import (
    CATALOG_CLOUDS,
    CatalogEntry,
    catalog_source,
    load_catalog,
    matching_entries,
    parse_catalog,
    price_of,
    regions,
)
from skytui.spec import Resources, load_pipeline_text

GPU_MEMORY = {"T4": 16, "L4": 24, "A10G": 24, "A100": 40, "A100-80GB": 80, "H100": 80, "H200": 141}
# The GPU families each catalog covers: GCP has no A10G (an AWS-only part).
GPU_FAMILIES = {"aws": set(GPU_MEMORY), "gcp": set(GPU_MEMORY) - {"A10G"}}
HEADER = (
    "instance_type,region,zones,vcpus,memory_gb,accelerator_name,accelerator_count,"
    "accelerator_memory_gb,price,spot_price"
)


def request(**fields: Any) -> Resources:
    return Resources.model_validate(fields)


def match(cloud: str, resources: Resources, **where: str) -> list[tuple[CatalogEntry, str | None]]:
    return matching_entries(load_catalog(cloud), resources, **where)


def types(cloud: str, resources: Resources, **where: str) -> set[str]:
    return {entry.instance_type for entry, _ in match(cloud, resources, **where)}


# ---- what requests resolve to ------------------------------------------------


def test_one_h100_on_aws_is_a_type_with_exactly_one_h100() -> None:
    fits = match("aws", request(accelerators="H100:1"))
    assert fits
    for entry, _ in fits:
        assert (entry.accelerator_name, entry.accelerator_count) == ("H100", 1)
    assert {entry.instance_type for entry, _ in fits} == {"p5.4xlarge"}


def test_eight_h100s_on_aws_is_p5_48xlarge_in_several_regions() -> None:
    fits = match("aws", request(accelerators="H100:8"))
    assert {entry.instance_type for entry, _ in fits} == {"p5.48xlarge"}
    assert len({entry.region for entry, _ in fits}) >= 3


def test_a_set_of_accelerators_resolves_every_candidate() -> None:
    candidates, ordered = request(accelerators={"H100": 8, "H200": 8}).candidates()
    assert not ordered and len(candidates) == 2
    for candidate in candidates:
        (wanted,) = candidate.accelerators
        for cloud in CATALOG_CLOUDS:
            fits = match(cloud, candidate)
            assert fits, f"{wanted} has no fit on {cloud}"
            assert {(e.accelerator_name, e.accelerator_count) for e, _ in fits} == {(wanted.name, 8)}


def test_one_h100_or_one_h200_resolves_the_h100() -> None:
    # Neither cloud sells a single H200 (only 8-GPU p5en / a3-ultragpu), so of
    # {H100: 1, H200: 1} only the H100 candidate has offers.
    candidates, _ = request(accelerators={"H100": 1, "H200": 1}).candidates()
    h100, h200 = candidates
    for cloud in CATALOG_CLOUDS:
        assert match(cloud, h100)
        assert match(cloud, h200) == []


def test_accelerator_names_are_case_insensitive_and_80gb_is_its_own_name() -> None:
    assert types("aws", request(accelerators="a100-80gb:8")) == {"p4de.24xlarge"}
    assert types("aws", request(accelerators="A100:8")) == {"p4d.24xlarge"}
    assert types("gcp", request(accelerators="a100:1")) == {"a2-highgpu-1g"}


def test_accelerator_count_must_match_exactly() -> None:
    assert types("aws", request(accelerators="A10G:4")) == {"g5.12xlarge"}
    assert types("aws", request(accelerators="H100:2")) == set()


def test_asking_by_gpu_memory_finds_every_big_enough_accelerator() -> None:
    fits = match("gcp", request(accelerators="nvidia:80GB+:8"))
    assert {entry.accelerator_name for entry, _ in fits} == {"A100-80GB", "H100", "H200"}
    assert match("gcp", request(accelerators="amd:80GB+:8")) == []


def test_four_plus_cpus_excludes_two_vcpu_and_gpu_types() -> None:
    for cloud in CATALOG_CLOUDS:
        fits = match(cloud, request(cpus="4+"))
        assert fits
        assert all(entry.vcpus >= 4 for entry, _ in fits)
        assert all(entry.accelerator_count == 0 for entry, _ in fits)
    assert "c6i.large" not in types("aws", request(cpus="4+"))
    assert "c6i.xlarge" in types("aws", request(cpus="4+"))


def test_exact_cpus_and_exact_memory() -> None:
    assert {e.vcpus for e, _ in match("aws", request(cpus=8))} == {8}
    assert types("gcp", request(cpus=4, memory=32)) == {"n2-highmem-4"}


def test_memory_per_cpu() -> None:
    fits = match("aws", request(memory="8x"))
    assert fits and all(entry.memory_gb >= 8 * entry.vcpus for entry, _ in fits)
    assert {entry.instance_type.split(".")[0] for entry, _ in fits} == {"r6i"}


def test_no_cpus_or_memory_means_at_least_four_vcpus() -> None:
    fits = match("gcp", Resources())
    assert fits and min(entry.vcpus for entry, _ in fits) == 4
    assert all(entry.accelerator_count == 0 for entry, _ in fits)


def test_instance_type_pins_the_type_with_its_gpus() -> None:
    fits = match("aws", request(instance_type="g5.2xlarge"))
    assert {entry.instance_type for entry, _ in fits} == {"g5.2xlarge"}
    assert len(fits) == 4  # one per region
    assert types("gcp", request(instance_type="n1-standard-4", accelerators="T4:1")) == {"n1-standard-4"}
    assert types("aws", request(instance_type="g5.2xlarge", accelerators="H100:1")) == set()
    assert types("aws", request(instance_type="c6i.large", cpus="4+")) == set()


def test_use_spot_drops_types_without_a_spot_price() -> None:
    on_demand = match("aws", request(accelerators="H100:1"))
    assert on_demand
    assert match("aws", request(accelerators="H100:1", use_spot=True)) == []
    spot = match("aws", request(accelerators="H100:8", use_spot=True))
    assert spot and all(price_of(entry, True) < price_of(entry, False) for entry, _ in spot)


def test_an_unknown_accelerator_gives_nothing() -> None:
    for cloud in CATALOG_CLOUDS:
        assert match(cloud, request(accelerators="B900:1")) == []


def test_region_and_zone_narrow_the_search() -> None:
    fits = match("aws", request(accelerators="H100:8"), region="us-east-2")
    assert [(entry.region, zone) for entry, zone in fits] == [("us-east-2", None)]
    fits = match("gcp", request(accelerators="L4:1"), region="us-east4", zone="us-east4-c")
    assert fits and all(zone == "us-east4-c" and zone in entry.zones for entry, zone in fits)
    assert match("gcp", request(accelerators="L4:1"), zone="us-east4-b") == []  # no L4 there


def test_prices_differ_by_region_so_failover_has_a_choice() -> None:
    fits = match("aws", request(accelerators="H100:8", use_spot=True))
    spot = {entry.region: price_of(entry, True) for entry, _ in fits}
    assert len(set(spot.values())) == len(spot) >= 3


def test_a_task_from_yaml_resolves() -> None:
    pipeline = load_pipeline_text(
        textwrap.dedent(
            """\
            resources:
              accelerators: {L4: 1, T4: 1}
              use_spot: true
            run: nvidia-smi
            """
        ),
        "task.yaml",
    )
    candidates, _ = pipeline.tasks[0].resources.candidates()
    for candidate in candidates:
        for cloud in CATALOG_CLOUDS:
            assert match(cloud, candidate), f"{candidate.accelerators} on {cloud}"


def test_matching_refuses_an_unflattened_request() -> None:
    with pytest.raises(ValueError, match="candidates"):
        match("aws", request(accelerators={"H100": 1, "H200": 1}))


def test_price_of_spot_without_spot_is_an_error() -> None:
    entry = match("aws", request(instance_type="p5.4xlarge"))[0][0]
    assert price_of(entry, False) == entry.price
    with pytest.raises(ValueError, match="spot"):
        price_of(entry, True)


# ---- the shipped data --------------------------------------------------------


@pytest.mark.parametrize("cloud", CATALOG_CLOUDS)
def test_every_row_parses_and_the_catalog_is_broad(cloud: str) -> None:
    entries = load_catalog(cloud)
    assert len(entries) >= 50
    assert all(entry.cloud == cloud for entry in entries)
    assert len(regions(cloud)) >= 4
    assert list(regions(cloud)) == sorted({entry.region for entry in entries})
    families = {entry.accelerator_name for entry in entries} - {None}
    assert families == GPU_FAMILIES[cloud]
    for entry in entries:
        assert entry.zones and all(zone.startswith(entry.region) for zone in entry.zones)
        if entry.accelerator_name is None:
            assert entry.accelerator_count == 0 and entry.accelerator_memory_gb is None
        else:
            assert entry.accelerator_memory_gb == GPU_MEMORY[entry.accelerator_name]


@pytest.mark.parametrize("cloud", CATALOG_CLOUDS)
def test_spot_is_cheaper_than_on_demand(cloud: str) -> None:
    for entry in load_catalog(cloud):
        if entry.spot_price is not None:
            assert 0 < entry.spot_price < entry.price, f"{entry.instance_type} in {entry.region}"


@pytest.mark.parametrize("cloud", CATALOG_CLOUDS)
def test_the_source_says_where_and_when(cloud: str) -> None:
    source = catalog_source(cloud)
    assert re.search(r", taken \d{4}-\d{2}-\d{2}$", source), source
    assert not source.startswith("#")


def test_the_catalogs_ship_with_the_package() -> None:
    text = (Path(__file__).resolve().parent.parent.parent / "pyproject.toml").read_text()
    assert "clouds/catalogs/*.csv" in text


def test_an_unknown_cloud_has_no_catalog() -> None:
    with pytest.raises(ValueError, match="aws, gcp"):
        load_catalog("azure")


# ---- malformed files ---------------------------------------------------------


def write_catalog(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "test.csv"
    path.write_text("\n".join(["# source: a test, taken 2026-01-01", HEADER, *rows]) + "\n")
    return path


GOOD = "m.large,r1,r1-a;r1-b,2,8,,,,0.1,0.03"


def test_a_well_formed_tmp_catalog_parses(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, GOOD, "g.big,r1,r1-a,8,32,L4,1,24,1.5,")
    plain, gpu = parse_catalog(path, "aws")
    assert plain.zones == ("r1-a", "r1-b") and plain.accelerator_name is None and plain.spot_price == 0.03
    assert (gpu.accelerator_name, gpu.accelerator_count, gpu.spot_price) == ("L4", 1, None)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("m.large,r1,r1-a,two,8,,,,0.1,0.03", "vcpus must be a number"),
        ("m.large,r1,r1-a,2,8,,,,0.1", "expected 10 fields"),
        ("m.large,r1,r1-a,2,8,,,,-1,", "price must be a positive number"),
        ("m.large,r1,,2,8,,,,0.1,", "zones"),
        ("m.large,r1,r1-a,2,8,,2,,0.1,", "without an accelerator name"),
        ("g.big,r1,r1-a,8,32,L4,,24,1.5,", "accelerator_count"),
        (GOOD, "already listed on line 3"),
    ],
)
def test_a_malformed_row_names_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = write_catalog(tmp_path, GOOD, row)
    with pytest.raises(ValueError, match=re.escape(f"{path}:4: ") + ".*" + re.escape(message)):
        parse_catalog(path, "aws")


def test_a_wrong_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("instance,region\n" + GOOD + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: expected the header")):
        parse_catalog(path, "gcp")
