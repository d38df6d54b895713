"""Sign-in codes by e-mail through the operator's SMTP server (stdlib smtplib, in a worker thread).

`smtp://` upgrades with STARTTLS whenever the server offers it; credentials are then sent only over
TLS, or in the clear to a loopback server. `smtps://` is TLS from the first byte. Credentials come
in the URL (`smtp://user:password@host:587`); neither they nor a code ever reach a log or an error.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

import anyio.to_thread
from pydantic import SecretStr

SMTP_TIMEOUT = 15.0


class MailError(Exception):
    """Mail could not be sent; the message names POLAR_MCP_SMTP_URL's host, never its credentials."""


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send: parsed from POLAR_MCP_SMTP_URL."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: SecretStr | None

    @property
    def where(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_smtp_url(url: SecretStr) -> SmtpServer:
    """The server POLAR_MCP_SMTP_URL names; ValueError (without the URL) when it is not one."""
    parts = urlsplit(url.get_secret_value().strip())
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("must be smtp://[user:password@]host[:port] or smtps://…")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 587)
    except ValueError:
        raise ValueError("has a port that is not a number") from None
    username = unquote(parts.username) if parts.username else None
    password = SecretStr(unquote(parts.password)) if parts.password else None
    return SmtpServer(parts.hostname, port, parts.scheme == "smtps", username, password)


def may_send_credentials(server: SmtpServer, *, encrypted: bool) -> bool:
    """Credentials travel only inside TLS, or to a server on this machine."""
    return encrypted or server.loopback


@dataclass(frozen=True)
class Mailer:
    """Sends one message per call; each call opens its own connection (codes are rare events)."""

    server: SmtpServer
    sender: str
    tls: ssl.SSLContext | None = None

    async def send_code(self, *, to: str, seller: str, code: str, minutes: int) -> None:
        message = EmailMessage()
        message["Subject"] = f"{code} is your sign-in code for {seller}"
        message["From"] = self.sender
        message["To"] = to
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(
            f"Your code to sign in to your purchases from {seller}:\n\n"
            f"    {code}\n\n"
            f"Type it on the sign-in page. It works once, for {minutes} minutes.\n\n"
            "If you did not ask for it, ignore this e-mail: nothing happens without the code.\n"
        )
        await anyio.to_thread.run_sync(self._deliver, message)

    async def check(self) -> None:
        """Connect, greet, upgrade and log in as sending would, then quit: proves the settings work."""
        await anyio.to_thread.run_sync(self._deliver, None)

    def _deliver(self, message: EmailMessage | None) -> None:
        server = self.server
        context = self.tls or ssl.create_default_context()
        try:
            if server.implicit_tls:
                connection: smtplib.SMTP = smtplib.SMTP_SSL(
                    server.host, server.port, timeout=SMTP_TIMEOUT, context=context
                )
            else:
                connection = smtplib.SMTP(server.host, server.port, timeout=SMTP_TIMEOUT)
            with connection:
                connection.ehlo()
                encrypted = server.implicit_tls
                if not encrypted and connection.has_extn("starttls"):
                    connection.starttls(context=context)
                    connection.ehlo()
                    encrypted = True
                if server.username is not None:
                    _login(connection, server, encrypted=encrypted)
                if message is not None:
                    connection.send_message(message)
                else:
                    connection.noop()
        except MailError:
            raise
        except smtplib.SMTPAuthenticationError:
            raise MailError(f"POLAR_MCP_SMTP_URL: {server.where} refused the user name or password") from None
        except smtplib.SMTPRecipientsRefused:
            raise MailError(f"POLAR_MCP_SMTP_URL: {server.where} refused the recipient") from None
        except (smtplib.SMTPException, OSError) as error:
            raise MailError(
                f"POLAR_MCP_SMTP_URL: cannot send through {server.where} ({type(error).__name__})"
            ) from None


def _login(connection: smtplib.SMTP, server: SmtpServer, *, encrypted: bool) -> None:
    if not may_send_credentials(server, encrypted=encrypted):
        raise MailError(
            f"POLAR_MCP_SMTP_URL: {server.where} offers no STARTTLS, and credentials are never sent "
            "unencrypted off this machine; use smtps:// or a server that offers STARTTLS"
        )
    assert server.username is not None
    connection.login(server.username, server.password.get_secret_value() if server.password else "")
