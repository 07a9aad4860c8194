"""`guard.sinks` and `guard.notify` in overcast.yaml: where notices go, and how often.

```yaml
guard:
  state_file: guard-state.sqlite      # events and the sinks' queues; survives restarts
  notify: {repeat_every: 3600, min_duration: 60}
  sinks:
    log:   {type: jsonl, path: /var/log/overcast/guard.jsonl}     # or path: "-" (stdout)
    siem:  {type: syslog, address: "192.0.2.50:6514", transport: tcp}
    noc:   {type: email, host: smtp.example.net, sender: guard@example.net,
            to: [noc@example.net], password_file: smtp.password, username: guard}
    slack: {type: webhook, url: "https://hooks.slack.com/services/...", template: slack}
```
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from overcast.model import Model

TEMPLATES = ("slack", "teams", "mattermost", "generic")  # bgp_guard/sinks/templates/


class Retry(Model):
    """Backoff between delivery attempts: doubling from `min` up to `max` seconds, each
    wait drawn between half and all of that (jitter, so sinks that came back are not hit
    by every guard at once)."""

    min: float = Field(1.0, gt=0)
    max: float = Field(300.0, gt=0)
    timeout: float = Field(10.0, gt=0)  # one attempt, connect to answer

    @model_validator(mode="after")
    def _ordered(self) -> Retry:
        if self.min > self.max:
            raise ValueError("retry.min is above retry.max; swap or lower them")
        return self


class JsonLinesSink(Model):
    type: Literal["jsonl"]
    path: str = "-"  # "-": standard output
    # Rotate when the file would pass max_bytes: guard.jsonl -> guard.jsonl.1 ... .keep.
    max_bytes: int = Field(10 * 2**20, ge=1024)
    keep: int = Field(5, ge=0, le=100)
    retry: Retry = Retry()


def _host_port(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port; write it like 192.0.2.50:514")
    return value


class SyslogSink(Model):
    """RFC 5424 messages over UDP (RFC 5426) or TCP (RFC 6587 octet counting)."""

    type: Literal["syslog"]
    address: Annotated[str, AfterValidator(_host_port)]
    transport: Literal["udp", "tcp"] = "udp"
    retry: Retry = Retry()


class EmailSink(Model):
    """SMTP submission with STARTTLS (RFC 3207), so the password never crosses in clear."""

    type: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    ca_file: str | None = None  # trust this CA for the server's certificate (else the system's)
    username: str | None = None
    password_file: str | None = None  # relative to overcast.yaml, mode 0600
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: tuple[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")], ...] = Field(min_length=1)
    retry: Retry = Retry()

    @model_validator(mode="after")
    def _login_needs_both(self) -> EmailSink:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("give both 'username' and 'password_file', or neither")
        if self.username is not None and not self.starttls:
            raise ValueError("a login needs 'starttls: true': the password would cross in clear")
        return self


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL; write it like https://hooks.example/x")
    return value


class WebhookSink(Model):
    """An HTTP POST per notice, its body rendered by a Jinja2 template: one of TEMPLATES or
    a file (relative to overcast.yaml)."""

    type: Literal["webhook"]
    url: Annotated[str, AfterValidator(_http_url)]
    template: str = "generic"
    headers: dict[str, str] = {}
    retry: Retry = Retry()


SinkConfig = Annotated[
    JsonLinesSink | SyslogSink | EmailSink | WebhookSink, Field(discriminator="type")
]


class Notify(Model):
    """When the NOC is told. Dedup is by event key: one open and one close per event."""

    # Say again that an event is still open every this many seconds (0: never), unless it
    # was acknowledged or is silenced.
    repeat_every: float = Field(3600.0, ge=0)
    # Tell nobody of an event that closed within this many seconds of opening (flaps).
    min_duration: float = Field(0.0, ge=0)
    # After a restart, events still open in the state file that no feed shows again within
    # this many seconds are closed (they ended while the guard was down).
    restart_grace: float = Field(600.0, ge=0)
