"""Kubernetes object names and labels, from Docker's looser names and labels.

- A DNS-1123 label (container names, Service and Pod names here): ``[a-z0-9-]``, at most
  63, starting and ending alphanumeric.
- A DNS-1123 subdomain (ConfigMap, Secret, PVC names): labels joined by dots, at most 253.
- A label key/value (apimachinery's ``IsQualifiedName`` / ``IsValidLabelValue``); what is
  not one goes to ``annotations`` instead, which take any string.
"""

from __future__ import annotations

import re

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def dns_label(text: str, fallback: str = "c") -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    return s or fallback


def dns_subdomain(text: str, fallback: str = "c") -> str:
    s = re.sub(r"[^a-z0-9.-]+", "-", text.lower())
    s = re.sub(r"\.+", ".", s).strip("-.")[:253].rstrip("-.")
    return ".".join(p.strip("-") or "x" for p in s.split(".")) if s else fallback


def is_dns_label(text: str) -> bool:
    return len(text) <= 63 and bool(_LABEL.fullmatch(text))


def is_label_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or
                  not all(_LABEL.fullmatch(p) for p in prefix.split("."))):
        return False
    return 0 < len(name) <= 63 and bool(_NAME_PART.fullmatch(name))


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_VALUE.fullmatch(value))


def split_labels(labels: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(labels Kubernetes accepts as labels, the rest as annotations)."""
    good, rest = {}, {}
    for k, v in sorted((labels or {}).items()):
        (good if is_label_key(k) and is_label_value(str(v)) else rest)[k] = str(v)
    return good, rest
