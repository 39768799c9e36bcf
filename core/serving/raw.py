"""``POST /v1/models/{name}/predict``: what `tl predict` reads, for one item or a few, answered
with the rows `tl predict` writes — through the plugin's own runtime hooks.

The upload is written into a private temporary folder and handed to the plugin's
``read_batches`` as if it were ``--data``; every batch goes through the model's batcher and
the plugin's ``decode``. What the body may be:

- ``multipart/form-data``: one or more files (``curl -F file=@scan.dcm``); text fields are
  the plugin's predict options;
- ``application/json``: rows, a list of objects (or one object, or ``{"rows": [...]}``),
  written as a CSV table: fraud transactions, a recsys history (user, item, time rows);
- ``text/csv``: such a table as is;
- anything else (``image/png``, ``application/dicom``, ``application/octet-stream``): one file,
  named by ``?filename=`` or given the extension its content type or first bytes tell.

Query parameters (and form fields) are the plugin's `tl predict` options (``?top_k=5``),
checked by the same click types; options naming a server path (e.g. ``--draw``) are refused.
"""

from __future__ import annotations

import json
import mimetypes
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from ..config import Config
from ..errors import TLError
from ..inference import InputBatch, RuntimeConfig, Skipped
from ..options import click_options
from .batching import Ticket
from .bodies import read_body
from .errors import RequestError, bad_request
from .models import ServedModel

TABLE = "rows.csv"
MAX_FILES = 256
_MAGIC = [
    (0, b"\x89PNG", ".png"),
    (0, b"\xff\xd8\xff", ".jpg"),
    (0, b"BM", ".bmp"),
    (0, b"II*\x00", ".tif"),
    (0, b"MM\x00*", ".tif"),
    (128, b"DICM", ".dcm"),
]
_TYPES = {"application/dicom": ".dcm", "image/jpeg": ".jpg", "image/tiff": ".tif"}
_SAFE = re.compile(r"[^A-Za-z0-9._ -]")
_RESERVED = {"filename"}


class PredictOptions:
    """A plugin's `tl predict` options, parsed from request parameters."""

    def __init__(self, plugin: Any) -> None:
        self.type = getattr(plugin, "predict_options_type", None)
        self.params = click_options(self.type, None) if self.type is not None else []
        self.by_name = {p.name: p for p in self.params if p.name}
        self.command = click.Command(f"{plugin.name}-predict", params=self.params)

    def parse(self, values: Mapping[str, str]) -> Any:
        if self.type is None:
            return None
        args: list[str] = []
        for key, value in values.items():
            name = key.replace("-", "_")
            param = self.by_name.get(name)
            if param is None:
                known = ", ".join(sorted(self.by_name)) or "none"
                raise bad_request(f"unknown option '{key}'", f"this model's options: {known}")
            if isinstance(param.type, click.Path):
                raise bad_request(
                    f"option '{key}' names a path on the server",
                    "leave it out (use `tl predict` for it)",
                )
            flag = f"--{name.replace('_', '-')}"
            if param.is_flag or param.secondary_opts:
                on = str(value).lower() in ("1", "true", "yes", "on")
                args.append(flag if on else f"--no-{flag[2:]}")
            else:
                args += [flag, str(value)]
        try:
            parsed = self.command.make_context("predict", args).params
        except click.UsageError as exc:
            raise bad_request(" ".join(exc.format_message().split()), "fix the option") from None
        given = {k: v for k, v in parsed.items() if v is not None and v != ()}
        try:
            return self.type(**given)
        except TLError as exc:
            raise bad_request(exc.what, exc.fix) from None


async def predict_raw(
    served: ServedModel, options: PredictOptions, request: Request, ticket: Ticket, device: str
) -> bytes:
    """The JSON answer: ``{"model_name": …, "rows": [rows of tl predict's output]}``."""
    with tempfile.TemporaryDirectory(prefix="tl-serve-") as tmp:
        folder = Path(tmp)
        path, fields = await _stage(request, folder)
        values = {k: v for k, v in request.query_params.items() if k not in _RESERVED}
        own = options.parse({**values, **fields})
        core = RuntimeConfig(data=str(path), batch_size=served.batcher.max_batch, device=device)
        config = Config(core, own, command="predict")  # type: ignore[arg-type]
        try:
            entries = await run_in_threadpool(_read_all, served, path, config)
            frames = []
            for entry in entries:
                outputs = await served.infer(entry.inputs, ticket)
                frame = await run_in_threadpool(
                    served.plugin.decode, served.model, entry, outputs, config
                )
                frames.append(frame)
        except TLError as exc:
            raise _client_error(exc, folder, options) from None
    rows = _records(frames)
    return b'{"model_name":' + json.dumps(served.name).encode() + b',"rows":' + rows + b"}"


def _read_all(served: ServedModel, path: Path, config: Config) -> list[InputBatch]:
    batches = []
    stream = served.plugin.read_batches(
        served.model, path, config, served.batcher.max_batch, labelled=False
    )
    for entry in stream:
        if isinstance(entry, Skipped):  # only under skip_bad, which this endpoint never sets
            raise bad_request(f"unreadable item: {entry.reason}", "fix the item")
        batches.append(entry)
    return batches


def _records(frames: list[Any]) -> bytes:
    import pandas as pd

    if not frames:
        return b"[]"
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    text = frame.to_json(orient="records", date_format="iso", double_precision=15)
    return text.encode()


def _client_error(exc: TLError, folder: Path, options: PredictOptions) -> RequestError:
    """The plugin's error about the upload, its temporary path replaced by the upload's name
    and its fix said for an HTTP client (`_fix_for_a_client`)."""
    where = exc.where
    root = str(folder)
    if where.startswith(root):
        where = where[len(root) :].lstrip("/\\") or "the upload"
    what = f"{exc.what} ({where})" if where else exc.what
    return RequestError(422, what.replace(root + "/", ""), _fix_for_a_client(exc.fix, options))


_SKIP_BAD = re.compile(r",?\s*(?:or\s+)?(?:pass|use)\s+--skip-bad\b[^,;)]*")
_FLAG = re.compile(r"--([a-z][a-z0-9-]*)(\s+[A-Z][A-Z_]*\b)?")


def _fix_for_a_client(fix: str, options: PredictOptions) -> str:
    """A `tl predict` fix, for this endpoint: ``--skip-bad`` (which it does not take) left
    out, and a predict option's flag given as the query parameter it takes here
    (``--item-column NAME`` → ``?item_column=NAME``)."""

    def parameter(match: re.Match[str]) -> str:
        name = match.group(1).replace("-", "_")
        if name not in options.by_name:
            return match.group(0)
        return f"?{name}={(match.group(2) or ' VALUE').strip()}"

    fix = _FLAG.sub(parameter, _SKIP_BAD.sub("", fix)).strip(" ,")
    return fix or "fix the upload and send it again"


async def _stage(request: Request, folder: Path) -> tuple[Path, dict[str, str]]:
    """Write the upload under ``folder``; returns what to read and the form's text fields."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await _stage_form(request, folder)
    body = await read_body(request)
    if not body:
        raise bad_request(
            "the request has no body",
            "send the item: a file (curl -F file=@scan.png), JSON rows or the raw bytes",
        )
    if kind == "application/json" or kind.endswith("+json"):
        return _write_rows(_parse_rows(body), folder / TABLE), {}
    if kind == "text/csv":
        (folder / TABLE).write_bytes(body)
        return folder / TABLE, {}
    name = request.query_params.get("filename") or "upload"
    target = folder / _safe_name(name, body, kind)
    target.write_bytes(body)
    return target, {}


async def _stage_form(request: Request, folder: Path) -> tuple[Path, dict[str, str]]:
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=64)
    except RequestError:
        raise
    except Exception as exc:  # starlette raises MultiPartException / HTTPException
        raise bad_request(
            f"the multipart form cannot be read ({exc})", "send a valid form"
        ) from None
    files, fields = [], {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            target = folder / _safe_name(value.filename or "upload", data, value.content_type)
            if target.exists():
                raise bad_request(
                    f"two files are named '{target.name}'", "give each a distinct name"
                )
            target.write_bytes(data)
            files.append(target)
        else:
            fields[key] = str(value)
    await form.close()
    if not files:
        raise bad_request("the form has no file", "send the item as a file: curl -F file=@scan.png")
    return (files[0] if len(files) == 1 else folder), fields


def _safe_name(name: str, head: bytes, kind: str | None) -> str:
    """The upload's base name, without path or odd characters, with an extension that says
    what it is: from the name, else the first bytes, else the content type (clients send
    generic or wrong ones: curl's form type, image/png for a DICOM file)."""
    base = _SAFE.sub("_", Path(name.replace("\\", "/")).name).strip(" .") or "upload"
    if Path(base).suffix:
        return base
    sniffed = (guess for offset, magic, guess in _MAGIC if head[offset:].startswith(magic))
    kind = (kind or "").split(";")[0].strip().lower()
    suffix = next(sniffed, None) or _TYPES.get(kind)
    if suffix is None and kind.startswith("image/"):
        suffix = mimetypes.guess_extension(kind)
    return base + (suffix or "")


def _parse_rows(body: bytes) -> list[dict[str, Any]]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(
            f"the request body is not valid JSON ({str(exc).splitlines()[0][:80]})",
            'send rows as a JSON list of objects: [{"column": value, ...}]',
        ) from None
    if isinstance(document, dict) and isinstance(document.get("rows"), list):
        document = document["rows"]
    rows = [document] if isinstance(document, dict) else document
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise bad_request(
            "the JSON body holds no rows", 'send a list of objects: [{"column": value, ...}]'
        )
    for row in rows:
        for column, value in row.items():
            if isinstance(value, (list, dict)):
                raise bad_request(
                    f"column '{column}' holds a {type(value).__name__}",
                    "send one number or string per column",
                )
    return rows


def _write_rows(rows: list[dict[str, Any]], target: Path) -> Path:
    """Rows as a CSV table the plugin's reader parses as it parses the user's files (values
    written as given: 3 stays 3, not 3.0; null is an empty cell)."""
    import pandas as pd

    pd.DataFrame(rows, dtype=object).to_csv(target, index=False)
    return target
