"""Languages and file extensions.

The 20 languages of replit-code-v1-3b's training mix, named as The Stack names them (its `lang` column), with
the extensions that mark them. This is the project's own short table of common extensions; The Stack's full
map (370 languages) is the reference it is checked against in the tests.
"""

from __future__ import annotations

import os
from pathlib import PurePath

REPLIT_LANGUAGE_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "Markdown": (".md", ".markdown"),
    "Java": (".java",),
    "JavaScript": (".js", ".es6", ".jsm"),
    "Python": (".py", ".pyw", ".bzl", ".gyp"),
    "TypeScript": (".ts", ".tsx"),
    "PHP": (".php", ".php3", ".php4", ".php5", ".phpt"),
    "SQL": (".sql", ".ddl", ".cql"),
    "JSX": (".jsx",),
    "reStructuredText": (".rst", ".rest"),
    "Rust": (".rs",),
    "C": (".c", ".h"),
    "CSS": (".css",),
    "Go": (".go",),
    "C++": (".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".inl", ".ipp", ".tcc", ".tpp"),
    "HTML": (".html", ".htm", ".xhtml"),
    "Vue": (".vue",),
    "Ruby": (".rb", ".rake", ".gemspec", ".ru"),
    "Jupyter Notebook": (".ipynb",),
    "R": (".r",),
    "Shell": (".sh", ".bash", ".zsh", ".ksh"),
}
REPLIT_LANGUAGES: tuple[str, ...] = tuple(REPLIT_LANGUAGE_EXTENSIONS)

_BY_EXTENSION = {ext: lang for lang, exts in REPLIT_LANGUAGE_EXTENSIONS.items() for ext in exts}
_BY_LOWER_NAME = {lang.lower(): lang for lang in REPLIT_LANGUAGES}


def language_of_path(path: str | PurePath) -> str | None:
    """The language a file name's extension marks (case-insensitive), or None if it is not in the table."""
    return _BY_EXTENSION.get(os.path.splitext(path)[1].lower())


def canonical_language(name: str) -> str:
    """A language name as The Stack spells it ("python" -> "Python"); unknown names pass through."""
    return _BY_LOWER_NAME.get(name.lower(), name)
