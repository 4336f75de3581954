"""Buckets: where files wait on their way to nodes (`jobs.bucket`), and the
buckets a task mounts (`file_mounts: {/data: s3://…}`, or `{name: …}`: a
bucket skytui creates when it is missing, and may delete when the job ends).

Nodes never get bucket credentials from skytui: this machine lists and signs,
and a node fetches each object from a time-limited signed URL (HTTPS GET, no
SDK, no keys on the node). Signed URLs grant access, so they travel only on a
command's stdin and never appear in a log, an event or an error.

Blocking SDK calls run in threads. Clouds know nothing of the engine.
"""

from skytui.clouds.buckets.fetch import FETCH_REFUSED_EXIT, fetch_command, fetch_input
from skytui.clouds.buckets.gcs import GCSBucket
from skytui.clouds.buckets.names import bucket_name_problem
from skytui.clouds.buckets.s3 import S3Bucket
from skytui.clouds.buckets.store import (
    SIGNED_URL_TTL_S,
    Bucket,
    SignedObject,
    local_files,
)
from skytui.clouds.buckets.urls import (
    CLOUD_STORES,
    SCHEMES,
    STORE_SCHEMES,
    BucketURL,
    UnsafeKeyError,
    place_of_key,
    places_in_target,
    resolve_below,
)

__all__ = [
    "CLOUD_STORES", "FETCH_REFUSED_EXIT", "SCHEMES", "SIGNED_URL_TTL_S", "STORE_SCHEMES", "Bucket", "BucketURL",
    "GCSBucket", "S3Bucket", "SignedObject", "UnsafeKeyError", "bucket_name_problem", "fetch_command",
    "fetch_input", "local_files", "open_bucket", "place_of_key", "places_in_target", "resolve_below",
]


def open_bucket(url: BucketURL) -> Bucket:
    return S3Bucket(url.bucket) if url.scheme == "s3" else GCSBucket(url.bucket)
