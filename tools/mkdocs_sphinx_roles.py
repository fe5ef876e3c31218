"""Griffe extension for the documentation site (mkdocs.yml loads it).

fastact's docstrings follow numpydoc and cross-reference with Sphinx roles
(``:func:`bias_act```). mkdocstrings renders Markdown and would print the role literally;
this extension rewrites each role into a mkdocs-autorefs link to the object, resolved like
Sphinx does: a dotted name as written, a bare name against the docstring's module. A link
whose target is on no page makes ``mkdocs build --strict`` fail, so references stay valid.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|attr|data|obj|mod):`~?([A-Za-z_][\w.]*)`")


def _walk(obj: Any):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is None:
                continue
            module = obj if obj.is_module else obj.module

            def link(match: re.Match[str], module: Any = module) -> str:
                name = match.group(1)
                if "." not in name and name in module.members:
                    return f"[`{name}`][{module.path}.{name}]"
                return f"[`{name}`][{name}]" if "." in name else f"`{name}`"

            obj.docstring.value = _ROLE.sub(link, obj.docstring.value)
