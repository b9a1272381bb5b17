"""The audit as one self-contained HTML page: fleet table (sortable), per-Service breakdowns,
per-node details. No external resources: styles and the sorting script are inline."""

from __future__ import annotations

import jinja2

from netproxy.audit.fleet import Fleet, to_json
from netproxy.render import templates_dir


def render_html(fleet: Fleet) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                             autoescape=True, trim_blocks=False, undefined=jinja2.StrictUndefined)
    data = to_json(fleet)
    return env.get_template("audit.html.j2").render(
        counts=data["counts"], service_ports=data["service_ports"], inputs=data["inputs"],
        engine={"name": "", "workers": 0, "jobs": 0, **data["engine"]}, elapsed=data["elapsed_seconds"], services=data["services"],
        node_problems=data["node_problems"], stuck=data["stuck"],
        other=data["other_mode_or_version"], nodes=data["nodes"])
