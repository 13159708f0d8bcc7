from serendip.bundle.bundle import Bundle, load_bundle
from serendip.bundle.manifest import SCHEMA_VERSION, DatasetInfo, Manifest
from serendip.bundle.store import BundleError, BundleWriter, new_bundle_id, resolve_bundle_path, verify_bundle

__all__ = [
    "SCHEMA_VERSION",
    "Bundle",
    "BundleError",
    "BundleWriter",
    "DatasetInfo",
    "Manifest",
    "load_bundle",
    "new_bundle_id",
    "resolve_bundle_path",
    "verify_bundle",
]
