"""MkDocs hook: README anchors that point at another part, in pages that include README text.

The pages include README sections (pymdownx.snippets), whose links to other sections
(``#security``) are anchors on GitHub's single page; on the site those sections are pages
of their own. Each README anchor that names a section is mapped to its page here, and an
anchor that is neither on its page nor mapped fails the build (a broken link is an error,
as everything else in the strict build).
"""

from __future__ import annotations

import re
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.utils import get_relative_url

#: README section anchor -> the page that holds that section.
README_ANCHORS = {
    "security": "security.md",
    "figures": "figures.md",
    "the-proxy-for-mysql-and-mariadb": "proxy-mysql.md",
    "the-data-api-sql-over-http-rds-data-api-compatible": "data-api.md",
    "the-budget": "budget.md",
    "the-client-fleetpooldatabase": "client.md",
    "the-proxy-a-self-hosted-rds-proxy-for-postgresql": "proxy-postgresql.md",
    "deploy-on-aws": "aws.md",
    "not-supported-yet": "limits.md",
}
_HREF = re.compile(r'href="#([^"]+)"')
_ID = re.compile(r'\bid="([^"]+)"')


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    ids = set(_ID.findall(html))

    def fix(match: re.Match[str]) -> str:
        anchor = match.group(1)
        if anchor in ids:
            return match.group(0)
        target = README_ANCHORS.get(anchor)
        if target is None:
            raise PluginError(f"{page.file.src_uri}: link to #{anchor}: no such anchor or page")
        url = get_relative_url(files.get_file_from_path(target).url, page.url)
        return f'href="{url}"'

    return _HREF.sub(fix, html)
