"""The configured sinks (guard.sinks) as transports for the Outbox."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bgp_guard.errors import InputError
from bgp_guard.sinks.config import EmailSink as EmailConfig
from bgp_guard.sinks.config import JsonLinesSink, Retry, SinkConfig, SyslogSink
from bgp_guard.sinks.email import EmailSink
from bgp_guard.sinks.jsonl import JsonLinesFile
from bgp_guard.sinks.outbox import Transport
from bgp_guard.sinks.syslog import SyslogSink as SyslogTransport
from bgp_guard.sinks.webhook import TemplateError, Webhook
from overcast.secretfile import ExposedSecretError, read_secret_file


def _password(path: Path) -> str:
    try:
        data = read_secret_file(path, "password", renew="change it on the mail server")
    except FileNotFoundError:
        raise InputError(
            f"password file {path} does not exist; write the SMTP password in it and run "
            f"'chmod 600 {path}' (relative paths start at the config file)"
        ) from None
    except ExposedSecretError as exc:
        raise InputError(f"password file {exc}") from None
    except OSError as exc:
        raise InputError(f"cannot read password file {path}: {exc.strerror}") from None
    return data.decode().splitlines()[0] if data.strip() else ""


def transport(name: str, config: SinkConfig, config_dir: Path) -> Transport:
    """Raises InputError naming guard.sinks.NAME for a bad template or password file."""
    try:
        if isinstance(config, JsonLinesSink):
            path = config.path if config.path == "-" else str(config_dir / config.path)
            return JsonLinesFile(path, config.max_bytes, config.keep)
        if isinstance(config, SyslogSink):
            return SyslogTransport(config.address, config.transport)
        if isinstance(config, EmailConfig):
            login = None
            if config.username is not None and config.password_file is not None:
                login = (config.username, _password(config_dir / config.password_file))
            ca = None if config.ca_file is None else str(config_dir / config.ca_file)
            return EmailSink(
                config.host, config.port, config.sender, config.to, config.starttls, ca, login,
                config.retry.timeout,
            )  # fmt: skip
        return Webhook(
            config.url, config.template, dict(config.headers), config_dir, config.retry.timeout
        )
    except (InputError, TemplateError) as exc:
        raise InputError(f"guard.sinks.{name}: {exc}") from None
    except OSError as exc:  # an unreadable CA file
        raise InputError(f"guard.sinks.{name}: {exc.strerror}: {exc.filename}") from None


def transports(
    sinks: Mapping[str, SinkConfig], config_dir: Path
) -> tuple[dict[str, Transport], dict[str, Retry]]:
    return (
        {name: transport(name, c, config_dir) for name, c in sinks.items()},
        {name: c.retry for name, c in sinks.items()},
    )
