"""The user's language: SkyPilot's task YAML as pydantic models.

The YAML format is SkyPilot's, unchanged (`sky/utils/schemas.py`), so an
existing task file runs as is. Everything a user can get wrong is refused here,
before anything is written anywhere, with a `SpecError` naming the file, the
line, the dotted field path and, where one is close, the field they meant.

This is the bottom layer: it imports nothing else from skytui but
`_yaml_lines` (shared with config and the clouds). This module only
re-exports; each concern has a module of its own:

    errors         SpecError; pydantic errors walked back to file:line: field
    sizes          SkyPilot's size strings ("100GB", "1Ti") as gigabytes
    kept_fields    SkyPilot fields skytui checks, keeps and does not act on
    base           the models' common base (unknown and kept fields)
    values         value parsers (infra, cpus, memory, accelerators, ports,
                   local paths), the vocabulary and bounds
    resources      Resources and JobRecovery
    pool           PoolSpec (`pool:` of a pool YAML)
    task           Task, FileMount, Pipeline
    overrides      launch flags (--env, --env-file, --cpus, -n, ...)
    documents      reading a file, its YAML documents, a pipeline's or job
                   group's header
    load_warnings  what a loaded file holds that has no effect here
    loader         YAML documents -> Pipeline / PoolDefinition
    stored         the stored form of a job's and a pool's spec
    written        a stored `resources:` back in the user's words (YAML)

How lines survive validation: `_yaml_lines` records the line of every key and
list item while loading; models raise errors whose pydantic location (plus an
optional `path` in the error context, for errors found in a model-level
validator) is walked back through the raw document to find the key the user
wrote. The models themselves never see line numbers.
"""

from __future__ import annotations

from skytui._yaml_lines import MAX_BYTES, YamlDocument, YamlProblem, load_documents, too_large_message
from skytui.spec.documents import read_text_file
from skytui.spec.errors import SpecError
from skytui.spec.kept_fields import RESOURCES_FIELDS, STORAGE_FIELDS, TASK_FIELDS, KeptField
from skytui.spec.load_warnings import InstanceTypeCheck
from skytui.spec.loader import PoolDefinition, load_pipeline, load_pipeline_text, load_pool
from skytui.spec.overrides import Overrides, parse_env_flag, read_env_file
from skytui.spec.pool import PoolSpec
from skytui.spec.resources import JobRecovery, Resources
from skytui.spec.sizes import UNIT_GB, parse_size_gb
from skytui.spec.stored import (
    pool_from_stored,
    stored_job_secrets,
    stored_job_spec,
    stored_pool_min_workers,
    stored_pool_resized,
    stored_pool_secrets,
    stored_pool_spec,
    stored_pool_workers,
    tasks_from_stored,
)
from skytui.spec.task import FileMount, Pipeline, Task
from skytui.spec.written import resources_yaml, written_resources
from skytui.spec.values import (
    KNOWN_CLOUDS,
    MAX_ACCELERATORS,
    MAX_CPUS,
    MAX_DISK_GB,
    MAX_MEMORY_GB,
    MAX_NUM_NODES,
    MAX_RESTARTS,
    MAX_WHOLE,
    OTHER_SKYPILOT_CLOUDS,
    RECOVERY_STRATEGIES,
    REDACTED,
    AcceleratorRequest,
    normalize_infra,
    parse_accelerator,
    parse_cpus,
    parse_memory,
    parse_ports,
)

__all__ = [
    "AcceleratorRequest",
    "FileMount",
    "JobRecovery",
    "KNOWN_CLOUDS",
    "OTHER_SKYPILOT_CLOUDS",
    "Overrides",
    "Pipeline",
    "PoolDefinition",
    "PoolSpec",
    "Resources",
    "SpecError",
    "Task",
    "load_pipeline",
    "load_pipeline_text",
    "load_pool",
    "parse_accelerator",
    "parse_env_flag",
    # The stored form (stored.py).
    "pool_from_stored",
    "stored_job_secrets",
    "stored_job_spec",
    "stored_pool_min_workers",
    "stored_pool_resized",
    "stored_pool_secrets",
    "stored_pool_spec",
    "stored_pool_workers",
    "tasks_from_stored",
    # The stored resources in the user's words (written.py).
    "resources_yaml",
    "written_resources",
    # Importable from the single-module spec.py before the split; kept so.
    "InstanceTypeCheck",
    "KeptField",
    "MAX_ACCELERATORS",
    "MAX_BYTES",
    "MAX_CPUS",
    "MAX_DISK_GB",
    "MAX_MEMORY_GB",
    "MAX_NUM_NODES",
    "MAX_RESTARTS",
    "MAX_WHOLE",
    "RECOVERY_STRATEGIES",
    "REDACTED",
    "RESOURCES_FIELDS",
    "STORAGE_FIELDS",
    "TASK_FIELDS",
    "UNIT_GB",
    "YamlDocument",
    "YamlProblem",
    "load_documents",
    "normalize_infra",
    "parse_cpus",
    "parse_memory",
    "parse_ports",
    "parse_size_gb",
    "read_env_file",
    "read_text_file",
    "too_large_message",
]
