"""Every error code the server can answer has a message in each of the UI's languages
(frontend/src/i18n/locales/*.json, `errors.codes`): the UI words its errors by code, so a new
code without a translation would reach operators only through the generic fallback.

The codes are read from the source: the code given to `ApiError(...)` and `error_response(...)`
or written as `{"error": {"code": ...}}`, the codes of `DownloadError`s (passed through for
`audio_url`), and werkzeug's name for each of its exceptions the server raises (turned into a
code by the error handlers)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import werkzeug.exceptions

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "shared" / "call_downloader", ROOT / "functions"]
LOCALES = ROOT / "frontend" / "src" / "i18n" / "locales"


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _constants(tree: ast.Module) -> dict[str, str | list[str]]:
    """Module-level NAME = "string" assignments, and NAME = {...: "string", ...} (its values)."""
    out: dict[str, str | list[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        value: str | list[str] | None = None
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            value = node.value.value
        elif isinstance(node.value, ast.Dict) and all(
            isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.value.values
        ):
            value = [v.value for v in node.value.values]  # type: ignore[union-attr]
        if value is not None:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = value
    return out


def _values(arg: ast.expr | None, constants: dict[str, str | list[str]]) -> list[str] | None:
    """The strings an argument can be, or None when the source does not say."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.Name) and isinstance(constants.get(arg.id), str):
        return [constants[arg.id]]  # type: ignore[list-item]
    if (  # TABLE.get(key, "default") on a module-level table of codes
        isinstance(arg, ast.Call)
        and isinstance(arg.func, ast.Attribute)
        and arg.func.attr == "get"
        and isinstance(arg.func.value, ast.Name)
        and isinstance(constants.get(arg.func.value.id), list)
        and len(arg.args) == 2
    ):
        default = _values(arg.args[1], constants)
        table = constants[arg.func.value.id]
        return None if default is None else [*table, *default]
    if isinstance(arg, ast.IfExp):
        a, b = _values(arg.body, constants), _values(arg.orelse, constants)
        return a + b if a is not None and b is not None else None
    return None


def _arg(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    if len(call.args) > index:
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _from_werkzeug_name(scope: ast.AST, name: str) -> bool:
    """`name` is assigned, in `scope`, from an exception's `.name` (the handlers' rule)."""
    return any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
        and any(isinstance(a, ast.Attribute) and a.attr == "name" for a in ast.walk(node.value))
        for node in ast.walk(scope)
    )


def _error_bodies(node: ast.Dict) -> list[ast.expr]:
    """The code of a literal {"error": {"code": ...}}."""
    out = []
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Constant) and key.value == "error" and isinstance(value, ast.Dict):
            for k, v in zip(value.keys, value.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "code":
                    out.append(v)
    return out


def server_error_codes() -> tuple[set[str], list[str]]:
    """(every code found, call sites whose code the source does not name)."""
    codes: set[str] = set()
    unresolved: list[str] = []
    werkzeug_raised: set[str] = set()
    for folder in SOURCES:
        for path in sorted(folder.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            constants = _constants(tree)
            download_errors = {"DownloadError"} | {
                node.name
                for node in ast.walk(tree)
                if isinstance(node, ast.ClassDef)
                and any(_name(b) == "DownloadError" for b in node.bases)
            }
            functions = [
                n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            ]
            for node in ast.walk(tree):
                if isinstance(node, ast.Dict):
                    for arg in _error_bodies(node):
                        if isinstance(arg, ast.Attribute) and arg.attr == "code":
                            continue  # passes on another error's code (an ApiError's)
                        found = _values(arg, constants)
                        if found is None:
                            unresolved.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                        else:
                            codes.update(found)
                if isinstance(node, ast.ClassDef) and node.name in download_errors - {
                    "DownloadError"
                }:
                    for call in ast.walk(node):
                        if isinstance(call, ast.Call) and _name(call.func) == "__init__":
                            found = _values(_arg(call, 0, "code"), constants)
                            if found is None:
                                unresolved.append(f"{path}:{call.lineno}")
                            else:
                                codes.update(found)
                if isinstance(node, ast.Raise) and node.exc is not None:
                    raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                    name = _name(raised)
                    if name and isinstance(getattr(werkzeug.exceptions, name, None), type):
                        werkzeug_raised.add(name)
                if not isinstance(node, ast.Call):
                    continue
                func = _name(node.func)
                if func in ("ApiError", "error_response"):
                    arg = _arg(node, 1, "code")
                    if isinstance(arg, ast.Attribute) and arg.attr == "code":
                        continue  # passes on another error's code: DownloadError, ApiError
                    scope = next(
                        (f for f in functions if f.lineno <= node.lineno <= (f.end_lineno or 0)),
                        tree,
                    )
                    if isinstance(arg, ast.Name) and _from_werkzeug_name(scope, arg.id):
                        continue  # a werkzeug exception's name: counted below
                elif func == "DownloadError":
                    arg = _arg(node, 0, "code")
                else:
                    continue
                found = _values(arg, constants)
                if found is None:
                    unresolved.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                else:
                    codes.update(found)
    for name in werkzeug_raised:
        exc = getattr(werkzeug.exceptions, name)
        if issubclass(exc, werkzeug.exceptions.HTTPException):
            # the handlers' rule: the exception's name, lower case, spaces as underscores
            codes.add(exc().name.lower().replace(" ", "_"))
    return codes, unresolved


def test_the_source_names_every_code_it_answers() -> None:
    codes, unresolved = server_error_codes()
    assert unresolved == []
    # The scan finds what it should: codes from each of its three sources.
    assert {"validation_error", "invalid_credentials", "not_found"} <= codes
    assert {"download_failed", "download_timeout", "redirect_refused", "too_large"} <= codes
    assert "request_entity_too_large" in codes
    assert len(codes) > 40


def test_every_code_has_a_message_in_every_language() -> None:
    codes, _ = server_error_codes()
    files = sorted(LOCALES.glob("*.json"))
    assert [f.stem for f in files] == ["en", "ru"]
    for file in files:
        messages = json.loads(file.read_text())["errors"]["codes"]
        missing = sorted(codes - set(messages))
        assert missing == [], f"{file.name} has no message for {missing}"
