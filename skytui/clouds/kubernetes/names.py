"""The names skytui gives pods and the label values it sets on them.

Owns the DNS-1123 pod name of a node and the cleaning of label values;
pure functions, touching nothing.
"""

from __future__ import annotations

import hashlib
import re


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _dns_label(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def pod_name(cluster: str, install_id: str, rank: int) -> str:
    """`<cluster>-<install id>-<rank>`, a DNS-1123 label (63 chars at most);
    a cluster name that had to change gets a hash, so names stay distinct."""
    suffix = f"-{_dns_label(install_id)}-{rank}"
    base = _dns_label(cluster) or "node"
    if base != cluster or len(base) + len(suffix) > 63:
        base = (base[: 63 - len(suffix) - 9].strip("-") or "node") + "-" + _short_hash(cluster)
    return base + suffix


def label_value(value: str) -> str:
    """A label value (63 chars, alphanumerics at both ends, -_. inside)."""
    if len(value) <= 63 and re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:54].strip("-_.")
    return f"{cleaned}-{_short_hash(value)}" if cleaned else _short_hash(value)
