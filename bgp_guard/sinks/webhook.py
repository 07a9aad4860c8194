"""A webhook: one HTTP POST of a JSON body per notice, the body rendered by a Jinja2 template.

Ready templates (bgp_guard/sinks/templates/): `slack`, `teams` (an Adaptive Card for a
Teams workflow), `mattermost`, and `generic` (the notice as is). A template sees `notice`,
`event` (= notice.event), `color` (red open, green close, amber otherwise) and `facts`
(name/value pairs: prefix, offending AS, peers, AS path, ARTEMIS type, ack, key), and the
filter `json` to write any value as a JSON literal. A template is tried on a sample notice
when the guard starts, so a broken one is reported then, not at the first hijack.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jinja2

from bgp_guard.sinks.config import TEMPLATES
from bgp_guard.sinks.outbox import SinkError

TEMPLATE_DIR = Path(__file__).parent / "templates"
COLORS = {"open": "#d00000", "repeat": "#d00000", "close": "#2eb886"}


class TemplateError(ValueError):
    """A webhook template that cannot be read, rendered, or does not render JSON."""


def _environment(search: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(TEMPLATE_DIR), str(search)]),
        undefined=jinja2.StrictUndefined,  # a misspelt field is an error, not ""
        autoescape=False,  # JSON, not HTML: the `json` filter does the quoting
        keep_trailing_newline=True,
    )
    env.filters["json"] = lambda value: json.dumps(value, sort_keys=True)
    return env


def facts(notice: dict[str, Any]) -> list[tuple[str, str]]:
    event = notice["event"]
    out = [("Prefix", event.get("prefix") or event.get("about") or "-")]
    if event.get("offending_as") is not None:
        out.append(("Offending AS", f"AS{event['offending_as']}"))
    if event.get("peer_count"):
        out.append(("Peers", str(event["peer_count"])))
    if event.get("example_path"):
        out.append(("AS path", " ".join(str(e) for e in event["example_path"])))
    if event.get("artemis"):
        out.append(("ARTEMIS", event["artemis"]))
    if notice.get("ack"):
        out.append(("Acknowledged by", notice["ack"]["by"]))
    out.append(("Key", notice["key"]))
    return out


def sample_notice() -> dict[str, Any]:
    event = {
        "type": "subprefix-origin", "artemis": "S|0|-|-", "state": "ongoing", "time": 0.0,
        "prefix": "192.0.2.0/25", "offending_as": 64511, "about": "192.0.2.0/24",
        "rationale": "A sample notice.", "first_seen": 0.0, "last_seen": 0.0,
        "peer_count": 1, "peers": ["198.51.100.1"], "example_path": [64501, 64511],
    }  # fmt: skip
    return {
        "notice": "open", "label": "open", "headline": "OPEN: sample", "key": "sample",
        "time": 0.0, "time_utc": "1970-01-01T00:00:00Z", "event": event, "ack": None,
        "silenced_until": None,
    }  # fmt: skip


class Webhook:
    def __init__(
        self,
        url: str,
        template: str = "generic",
        headers: dict[str, str] | None = None,
        config_dir: Path = Path(),
        timeout: float = 10.0,
    ) -> None:
        """`template`: a name from TEMPLATES or a file relative to `config_dir`; raises
        TemplateError if it does not render a sample notice to JSON."""
        self.url = url
        name = f"{template}.json.j2" if template in TEMPLATES else template
        try:
            self.template = _environment(config_dir).get_template(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(
                f"no webhook template {template!r}; use one of {', '.join(TEMPLATES)} or a "
                "file relative to overcast.yaml"
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template {template}: line {exc.lineno}: {exc.message}") from None
        self.name = template
        self.render(sample_notice())
        self.headers = {"content-type": "application/json", **(headers or {})}
        self.client = httpx.AsyncClient(timeout=timeout, trust_env=False)

    def render(self, notice: dict[str, Any]) -> bytes:
        try:
            body = self.template.render(
                notice=notice,
                event=notice["event"],
                color=COLORS.get(notice["notice"], "#daa038"),
                facts=facts(notice),
            )
            json.loads(body)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {self.name}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise TemplateError(
                f"template {self.name} does not render JSON ({exc}); quote values with the "
                "`json` filter"
            ) from None
        return body.encode()

    async def send(self, notice: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            answer = await self.client.post(
                self.url, content=self.render(notice), headers=self.headers
            )
        except httpx.HTTPError as exc:
            raise SinkError(f"POST {self.url}: {exc or type(exc).__name__}") from None
        if not 200 <= answer.status_code < 300:
            raise SinkError(
                f"POST {self.url}: HTTP {answer.status_code} after "
                f"{time.monotonic() - started:.1f} s: {answer.text[:200]}"
            )

    async def close(self) -> None:
        await self.client.aclose()
