"""`validate`: SkyPilot's verdict on task, pipeline, job group and pool
YAMLs, launching nothing.

May touch the client (its catalog judge and planner), `render`, `common`
and the spec models.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.text import Text

from skytui.cli.common import EXIT_OK, EXIT_USAGE
from skytui.cli.render import err, out, print_warnings
from skytui.client import Client

if TYPE_CHECKING:
    from skytui.spec import Pipeline


def cmd_validate(client: Client, args: argparse.Namespace) -> int:
    return validate_files(client, args.files, here=args.here)


def validate_files(client: Client, files: Sequence[str], *, here: bool) -> int:
    from skytui.client.planning import InfeasibleError
    from skytui.spec import Pipeline, SpecError, load_pipeline, load_pool

    judge = client.instance_type_problem
    invalid = 0
    for file in files:
        try:
            try:
                pipeline = load_pipeline(file, spec_only=not here, instance_types=judge)
            except SpecError as exc:
                if exc.field != "pool":
                    raise
                definition = load_pool(file, spec_only=not here, instance_types=judge)  # a pool YAML
                if here:
                    client.plan(Pipeline(name=definition.task.name or "pool", tasks=[definition.task], source=file))
                print_warnings(definition.warnings)
                out.print(f"{file}: valid pool spec {definition.task.name!r}")
                continue
            if here:
                client.plan(pipeline)
        except (SpecError, InfeasibleError) as exc:
            err.print(Text(f"{exc}" if isinstance(exc, SpecError) else f"{file}: infeasible here: {exc}"))
            invalid += 1
            continue
        print_warnings(pipeline.warnings)
        out.print(f"{file}: valid {_spec_kind(pipeline)} {pipeline.name!r}")
    return EXIT_USAGE if invalid else EXIT_OK


def _spec_kind(pipeline: Pipeline) -> str:
    if pipeline.is_group:
        return f"job group of {len(pipeline.tasks)} tasks"
    return f"pipeline of {len(pipeline.tasks)} tasks" if pipeline.is_pipeline else "task"
