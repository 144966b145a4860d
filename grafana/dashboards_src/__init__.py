"""Code that generates the runwatch Grafana dashboards (see ../generate.py).

One module per dashboard; ``common`` holds the datasource refs and the small
helpers every panel goes through (so every panel gets a title, description,
unit and a datasource by uid).
"""

from . import exporter, overview, run_detail, views, workflow

DASHBOARDS = {
    "runwatch-overview.json": overview.build,
    "runwatch-run.json": run_detail.build,
    "runwatch-exporter.json": exporter.build,
    "runwatch-workflow.json": workflow.build,
    **{f"runwatch-{slug}.json": (lambda s=slug: views.build_view(s)) for slug in views.VIEWS},
}
