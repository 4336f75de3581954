"""The whole suite's setting: no real credentials, and its fixture modules.

tests/unit (pure, fast), tests/engine (the engine in-process over sim),
tests/e2e (the CLI and daemon end to end) and tests/tui (the app) each have a
conftest.py of their own; what several share lives in tests/fixtures/, loaded
here as plugins. The session-scoped servers (sshd, moto, PostgreSQL) start
only when a test asks for them, once per run.
"""

from __future__ import annotations

import os

os.environ.pop("NO_COLOR", None)  # NO_COLOR=1 would make every TUI snapshot differ

# No test may find the real credentials of whoever runs it, nor probe a cloud
# metadata server: every cloud SDK is pointed at nothing (tests that want a
# cloud point it at a loopback server of their own).
for _name in [name for name in os.environ if name.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_", "KUBE"))]:
    del os.environ[_name]
os.environ.update(
    AWS_SHARED_CREDENTIALS_FILE="/nonexistent/skytui-tests/aws-credentials",
    AWS_CONFIG_FILE="/nonexistent/skytui-tests/aws-config",
    AWS_EC2_METADATA_DISABLED="true",
    CLOUDSDK_CONFIG="/nonexistent/skytui-tests/gcloud",
    NO_GCE_CHECK="true",  # google-auth honours exactly "true"
    KUBECONFIG="/nonexistent/skytui-tests/kubeconfig",
)
os.environ.pop("KUBERNETES_SERVICE_HOST", None)

# Only the top-level conftest may name plugins; this folder is on sys.path
# (pytest's rootdir-less conftest), so `fixtures` and `infra` import by name.
pytest_plugins = ["fixtures.env", "fixtures.sshd", "fixtures.moto", "fixtures.postgres", "fixtures.remote",
                  "fixtures.system_packages"]
