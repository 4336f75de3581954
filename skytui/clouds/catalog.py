"""Instance catalogs: what each cloud offers where, and what it costs.

This module owns the shipped price lists (`catalogs/<cloud>.csv`: instance
types per region with their zones, vCPUs, memory, accelerators and on-demand
and spot prices per hour) and SkyPilot's rules for which of those entries fit
one concrete resource request. Ranking the fits by price, and everything
about provisioning, belongs to the callers. Nothing here touches the network:
the CSVs are snapshots whose origin and date `catalog_source` reports.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skytui.spec import AcceleratorRequest, Resources

CATALOG_CLOUDS: tuple[str, ...] = ("aws", "gcp")

COLUMNS: tuple[str, ...] = (
    "instance_type", "region", "zones", "vcpus", "memory_gb", "accelerator_name",
    "accelerator_count", "accelerator_memory_gb", "price", "spot_price",
)

# With neither cpus, memory, accelerators nor an instance type, SkyPilot picks
# a default VM: 8+ vCPUs on AWS and GCP (m6i.2xlarge, n2-standard-8). skytui
# asks for 4+ vCPUs on every cloud instead: a smaller, cheaper default that
# still rules out burstable 1-2 vCPU types.
DEFAULT_CPUS_MIN = 4.0

_CATALOG_DIR = Path(__file__).with_name("catalogs")
_SOURCE_PREFIX = "# source:"


@dataclass(frozen=True)
class CatalogEntry:
    """One instance type in one region."""

    cloud: str  # "aws" | "gcp"
    instance_type: str
    region: str
    zones: tuple[str, ...]
    vcpus: float
    memory_gb: float
    accelerator_name: str | None
    accelerator_count: float  # 0 for CPU types
    accelerator_memory_gb: float | None  # per accelerator
    price: float  # on-demand $/h
    spot_price: float | None  # None: no spot


# ---- loading -----------------------------------------------------------------


def catalog_path(cloud: str) -> Path:
    if cloud not in CATALOG_CLOUDS:
        raise ValueError(f"no catalog for cloud {cloud!r}; catalogs exist for {', '.join(CATALOG_CLOUDS)}")
    return _CATALOG_DIR / f"{cloud}.csv"


@functools.cache
def load_catalog(cloud: str) -> tuple[CatalogEntry, ...]:
    """Every entry of the shipped catalog of `cloud`, in file order."""
    return parse_catalog(catalog_path(cloud), cloud)


@functools.cache
def catalog_source(cloud: str) -> str:
    """Where the prices come from and when they were taken.

    The text of the catalog's `# source: <where>, taken <YYYY-MM-DD>` line,
    without the `# source:` marker.
    """
    path = catalog_path(cloud)
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            if line.startswith(_SOURCE_PREFIX):
                return line[len(_SOURCE_PREFIX):].strip()
    raise ValueError(f"{path}: no '{_SOURCE_PREFIX} <where>, taken <date>' line at the top")


# How each catalog cloud names its instance types (family.size on AWS,
# family-kind-size on GCP): a name of another shape exists in no catalog.
_INSTANCE_TYPE_SHAPES = {
    "aws": re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$"),
    "gcp": re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)+$"),
}


def instance_type_problem(cloud: str | None, region: str | None, instance_type: str) -> tuple[bool, str] | None:
    """(certain, why) when `instance_type` is not in the catalog of the cloud
    it asks for, else None.

    The shipped catalogs are snapshots of the types skytui prices, not every
    type a cloud sells: a name of the cloud's shape that they lack is only a
    warning (certain=False); a name of another shape is in no catalog at all
    (certain=True). Only aws and gcp (and sim's mirrors of them, region
    `aws/...`) are judged; other clouds are left to their own catalogs."""
    if cloud == "sim" and region and "/" in region:
        cloud = region.split("/", 1)[0]
    if cloud not in CATALOG_CLOUDS or any(e.instance_type == instance_type for e in load_catalog(cloud)):
        return None
    if not _INSTANCE_TYPE_SHAPES[cloud].match(instance_type):
        return True, f"{instance_type!r} is not an instance type of {cloud}"
    return False, (f"{instance_type!r} is not in skytui's {cloud} catalog: "
                   "`jobs launch` will find no offer for it here")


def regions(cloud: str) -> tuple[str, ...]:
    """The regions the catalog of `cloud` lists, sorted."""
    return tuple(sorted({entry.region for entry in load_catalog(cloud)}))


def parse_catalog(path: Path, cloud: str) -> tuple[CatalogEntry, ...]:
    """Parse one catalog CSV; a bad row raises ValueError naming `path:line`.

    Lines starting with `#` and blank lines are skipped; the first other line
    must be the header, with exactly the columns of `COLUMNS`.
    """
    entries: list[CatalogEntry] = []
    seen: dict[tuple[str, str], int] = {}
    header_seen = False
    with path.open(encoding="utf-8", newline="") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = next(csv.reader([line]))
            where = f"{path}:{lineno}"
            if not header_seen:
                if tuple(field.strip() for field in fields) != COLUMNS:
                    raise ValueError(f"{where}: expected the header {','.join(COLUMNS)}")
                header_seen = True
                continue
            entry = _parse_row(fields, cloud, where)
            key = (entry.instance_type, entry.region)
            if key in seen:
                raise ValueError(
                    f"{where}: {entry.instance_type} in {entry.region} is already listed on line {seen[key]}"
                )
            seen[key] = lineno
            entries.append(entry)
    if not header_seen:
        raise ValueError(f"{path}:1: no header line; expected {','.join(COLUMNS)}")
    return tuple(entries)


def _parse_row(fields: list[str], cloud: str, where: str) -> CatalogEntry:
    if len(fields) != len(COLUMNS):
        raise ValueError(f"{where}: expected {len(COLUMNS)} fields, got {len(fields)}")
    row = dict(zip(COLUMNS, (field.strip() for field in fields), strict=True))
    for name in ("instance_type", "region"):
        if not row[name]:
            raise ValueError(f"{where}: {name} is empty")
    zones = tuple(zone.strip() for zone in row["zones"].split(";"))
    if not all(zones):
        raise ValueError(f"{where}: zones must be ';'-separated zone names, got {row['zones']!r}")
    accelerator = row["accelerator_name"] or None
    if accelerator is None:
        if row["accelerator_count"] not in ("", "0") or row["accelerator_memory_gb"]:
            raise ValueError(f"{where}: accelerator count or memory given without an accelerator name")
        count, accelerator_memory = 0.0, None
    else:
        count = _number(row, "accelerator_count", where)
        accelerator_memory = _number(row, "accelerator_memory_gb", where)
    return CatalogEntry(
        cloud=cloud,
        instance_type=row["instance_type"],
        region=row["region"],
        zones=zones,
        vcpus=_number(row, "vcpus", where),
        memory_gb=_number(row, "memory_gb", where),
        accelerator_name=accelerator,
        accelerator_count=count,
        accelerator_memory_gb=accelerator_memory,
        price=_number(row, "price", where),
        spot_price=_number(row, "spot_price", where) if row["spot_price"] else None,
    )


def _number(row: dict[str, str], name: str, where: str) -> float:
    text = row[name]
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: {name} must be a positive number, got {text!r}")
    return value


# ---- matching ----------------------------------------------------------------


def matching_entries(
    entries: Iterable[CatalogEntry],
    request: Resources,
    *,
    region: str | None = None,
    zone: str | None = None,
) -> list[tuple[CatalogEntry, str | None]]:
    """The entries that fit one concrete candidate, each with its zone.

    `request` is one of `Resources.candidates()`: at most one accelerator, no
    any_of/ordered. `region`/`zone` narrow the search (the caller parses
    infra); the zone paired with each entry is the requested one, or None.
    The result is unsorted.
    """
    if request.any_of or request.ordered or len(request.accelerators) > 1:
        raise ValueError("matching_entries takes one concrete candidate; flatten it with Resources.candidates()")
    accelerator = request.accelerators[0] if request.accelerators else None
    default_cpus = (
        request.instance_type is None and accelerator is None and request.cpus is None and request.memory is None
    )
    return [
        (entry, zone)
        for entry in entries
        if (region is None or entry.region == region)
        and (zone is None or zone in entry.zones)
        and (request.instance_type is None or entry.instance_type == request.instance_type)
        and _accelerator_fits(entry, accelerator, pinned=request.instance_type is not None)
        and _cpus_fit(entry, request, default_cpus)
        and _memory_fits(entry, request)
        and (not request.use_spot or entry.spot_price is not None)
    ]


def _accelerator_fits(entry: CatalogEntry, request: AcceleratorRequest | None, *, pinned: bool) -> bool:
    if request is None:
        # Without an accelerator request only CPU types fit, unless the user
        # named the instance type: then its GPUs come along.
        return pinned or entry.accelerator_count == 0
    if entry.accelerator_name is None or entry.accelerator_count != request.count:
        return False
    # Every accelerator in the catalogs is an NVIDIA GPU.
    if request.manufacturer is not None and request.manufacturer.lower() != "nvidia":
        return False
    if request.name is not None and entry.accelerator_name.lower() != request.name.lower():
        return False
    if request.min_memory_gb is not None:
        return entry.accelerator_memory_gb is not None and entry.accelerator_memory_gb >= request.min_memory_gb
    return True


def _cpus_fit(entry: CatalogEntry, request: Resources, default: bool) -> bool:
    wanted = DEFAULT_CPUS_MIN if default else request.cpus_min
    if wanted is None:
        return True
    if request.cpus_exact:
        return math.isclose(entry.vcpus, wanted)
    return entry.vcpus >= wanted


def _memory_fits(entry: CatalogEntry, request: Resources) -> bool:
    per_cpu = request.memory_per_cpu
    if per_cpu is not None:
        return entry.memory_gb >= per_cpu * entry.vcpus
    wanted = request.memory_min
    if wanted is None:
        return True
    if request.memory_exact:
        return math.isclose(entry.memory_gb, wanted)
    return entry.memory_gb >= wanted


def price_of(entry: CatalogEntry, use_spot: bool) -> float:
    """$/h of `entry`, on spot or on demand."""
    if not use_spot:
        return entry.price
    if entry.spot_price is None:
        raise ValueError(f"{entry.instance_type} in {entry.region} is not offered on spot")
    return entry.spot_price
