"""The one template engine of the HTML pages (the web UI and the files path's folder
listings): Jinja, autoescaping everything, over the package's own templates. Loaded at the
first page, so that a registry that never serves one never imports it."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("ocinest.registry", "templates"),
        autoescape=True,
    )


def render(template: str, **context: Any) -> str:
    """The page `template` (a file of templates/) rendered with `context`."""
    return _environment().get_template(template).render(**context)
