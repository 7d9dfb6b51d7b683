"""Import the Kibana data views and dashboard (``tradeconsole kibana import``).

The saved objects live in ``infra/deploy/kibana/*.ndjson``: one data view per event family
(``tradeconsole-<family>-*``, time field ``@timestamp``) and a dashboard of four Vega panels
(price with RSI/MACD/CCI, trades and PnL, equity and return, open-candle indicators). They are
sent to Kibana's saved objects import API, ``POST /api/saved_objects/_import?overwrite=true``
with the ``kbn-xsrf`` header, so running the command again updates them in place.

Authentication: an API key from ``TRADECONSOLE_KIBANA_API_KEY`` or ``api_key`` under ``[kibana]``
in the config file (or ``username``/``password`` there). ``--kibana cloud`` derives the Kibana
URL from the Elastic Cloud ``cloud_id`` under ``[elasticsearch]``. An ``index_prefix`` under
``[elasticsearch]`` other than ``tradeconsole`` is applied to the data views and panels.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeconsole.infra.sinks.elastic import DEFAULT_INDEX_PREFIX, check_index_prefix

if TYPE_CHECKING:
    import argparse

__all__ = [
    "SAVED_OBJECTS_DIR",
    "KibanaImportError",
    "cli_main",
    "import_saved_objects",
    "kibana_url_from_cloud_id",
    "load_saved_objects",
]

SAVED_OBJECTS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kibana"


class KibanaImportError(RuntimeError):
    """Kibana refused the import (the message lists the objects and reasons)."""


def load_saved_objects(files: Sequence[Path] | None = None, index_prefix: str = DEFAULT_INDEX_PREFIX) -> bytes:
    """The NDJSON to import: every line checked to be a saved object, the index prefix applied."""
    paths = list(files) if files is not None else sorted(SAVED_OBJECTS_DIR.glob("*.ndjson"))
    if not paths:
        raise FileNotFoundError(f"no saved objects (*.ndjson) in {SAVED_OBJECTS_DIR}")
    check_index_prefix(index_prefix)
    lines: list[str] = []
    for path in paths:
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if not (
                isinstance(obj, dict) and obj.get("type") and obj.get("id") and isinstance(obj.get("attributes"), dict)
            ):
                raise ValueError(f"{path}:{n}: not a saved object (type, id and attributes are required)")
            if index_prefix != DEFAULT_INDEX_PREFIX:
                line = line.replace(f"{DEFAULT_INDEX_PREFIX}-", f"{index_prefix}-")
            lines.append(line)
    return ("\n".join(lines) + "\n").encode()


def kibana_url_from_cloud_id(cloud_id: str) -> str:
    """The Kibana URL an Elastic Cloud ``cloud_id`` (``name:base64(host$es$kibana)``) points to."""
    encoded = cloud_id.split(":", 1)[-1]
    try:
        host, _es, kibana = base64.b64decode(encoded + "=" * (-len(encoded) % 4)).decode().split("$")[:3]
    except (ValueError, UnicodeDecodeError):
        raise ValueError("cloud_id is not an Elastic Cloud id") from None
    host, _, port = host.partition(":")
    return f"https://{kibana}.{host}" + (f":{port}" if port and port != "443" else "")


def import_saved_objects(
    kibana_url: str,
    ndjson: bytes,
    *,
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    space: str | None = None,
    ca_certs: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """POST the objects to ``<kibana>[/s/<space>]/api/saved_objects/_import?overwrite=true``.

    Returns Kibana's answer (``success``, ``successCount``, ``successResults``); raises
    KibanaImportError when Kibana reports errors or answers with an error status.
    """
    base = kibana_url.rstrip("/") + (f"/s/{space}" if space and space != "default" else "")
    boundary = f"----tradeconsole{uuid.uuid4().hex}"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="tradeconsole.ndjson"\r\n'
            "Content-Type: application/ndjson\r\n\r\n"
        ).encode()
        + ndjson
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "kbn-xsrf": "true",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Accept": "application/json",
    }
    if api_key:
        headers["Authorization"] = f"ApiKey {api_key}"
    elif username:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(
        f"{base}/api/saved_objects/_import?overwrite=true", data=body, headers=headers, method="POST"
    )
    context = ssl.create_default_context(cafile=ca_certs) if ca_certs else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:  # the configured URL
            answer = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise KibanaImportError(f"Kibana answered {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise KibanaImportError(f"cannot reach Kibana at {kibana_url}: {exc.reason}") from None
    if not answer.get("success", False):
        problems = "; ".join(
            f"{e.get('type')}/{e.get('id')}: {e.get('error', {}).get('type', e.get('error'))}"
            for e in answer.get("errors", [])
        )
        raise KibanaImportError(f"Kibana imported {answer.get('successCount', 0)} object(s) and refused: {problems}")
    return answer


def _kibana_config(path: Path | None) -> dict[str, Any]:
    import tomllib

    if path is None:
        return {}
    with open(path, "rb") as f:
        section = tomllib.load(f).get("kibana", {})
    return dict(section) if isinstance(section, Mapping) else {}


def cli_main(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    """``tradeconsole kibana import --kibana URL [--config PATH]``."""
    from tradeconsole.core.errors import EnvironmentFailure, UserError
    from tradeconsole.infra.settings import load_settings

    # errors go through tradeconsole.tui.cli.main: one `error:` line on stderr (a ConfigError is exit 2)
    settings = load_settings(getattr(args, "config", None))  # also refuses unsafe config files
    kib = _kibana_config(settings.config_path)
    es_cfg = settings.elasticsearch
    url = args.kibana
    if url == "cloud":
        if not es_cfg.get("cloud_id"):
            raise UserError("--kibana cloud needs cloud_id under [elasticsearch] in the config file")
        url = kibana_url_from_cloud_id(str(es_cfg["cloud_id"]))
    api_key = env.get("TRADECONSOLE_KIBANA_API_KEY") or kib.get("api_key") or None
    try:
        ndjson = load_saved_objects(index_prefix=str(es_cfg.get("index_prefix", DEFAULT_INDEX_PREFIX)))
        answer = import_saved_objects(
            url,
            ndjson,
            api_key=api_key,
            username=kib.get("username"),
            password=kib.get("password"),
            space=kib.get("space"),
            ca_certs=kib.get("ca_certs"),
        )
    except (KibanaImportError, ValueError, OSError) as exc:
        raise EnvironmentFailure(str(exc)) from None
    print(
        f"imported {answer.get('successCount', 0)} saved object(s) into {url} "
        f"(data views and the 'tradeconsole' dashboard)"
    )
    return 0
