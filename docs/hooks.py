"""MkDocs hook: the site's home page is the README, with its links rewritten to work from docs/.

Links into docs/ drop that prefix; links to other repository files (bench/RESULTS.md) cannot be
followed on the site, so they become the file's name in code type, "in the repository".
"""

import re
from pathlib import Path

from mkdocs.structure.files import File

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def _site_link(match: re.Match) -> str:
    bang, text, target = match.groups()
    if re.match(r"^[a-z]+:|^#", target):
        return match.group(0)
    if target.startswith("docs/"):
        return f"{bang}[{text}]({target[len('docs/') :]})"
    return f"{text} (`{target}` in the repository)" if text != target else f"`{target}` (in the repository)"


def on_files(files, config):
    readme = Path(config["config_file_path"]).parent / "README.md"
    content = _LINK.sub(_site_link, readme.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=content))
    return files
