"""The one template engine of the HTML pages (the web UI and the files path's folder
listings): Jinja, autoescaping everything, over the package's own templates."""

from __future__ import annotations

import jinja2

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("ocinest.registry", "templates"),
    autoescape=True,
)
