"""Codes by e-mail through real SMTP servers on loopback: plain, STARTTLS, implicit TLS, with login."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from polar_mcp.hosted.mail import Mailer, MailError, SmtpServer, may_send_credentials, parse_smtp_url
from tests.helpers.hosted import Mailbox, free_port

pytestmark = [
    pytest.mark.anyio,
    # The plain server below takes a login without TLS on purpose (loopback only); aiosmtpd warns.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the system's openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class Recorder(Mailbox):
    """A mailbox that also records how each message arrived: over TLS or not, and who logged in."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[tuple[bool, str | None]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.sessions.append((server.transport.get_extra_info("ssl_object") is not None, login))
        return await super().handle_DATA(server, session, envelope)


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"files" and auth_data.password == b"p@ss word"
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture
def served(
    request: pytest.FixtureRequest, certificate: tuple[Path, Path]
) -> Iterator[tuple[SmtpServer, Recorder, ssl.SSLContext]]:
    """An aiosmtpd server in one of three ways (the test's parameter), requiring a login."""
    kind: str = request.param
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(*certificate)
    client_tls = ssl.create_default_context(cafile=str(certificate[0]))
    recorder, port = Recorder(), free_port()
    options: dict[str, Any] = {"authenticator": _authenticate, "auth_required": True}
    if kind == "starttls":
        options |= {"tls_context": server_tls, "require_starttls": True}
    elif kind == "smtps":
        # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS from its first byte.
        options |= {"ssl_context": server_tls, "auth_require_tls": False}
    else:
        options |= {"auth_require_tls": False}
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **options)
    controller.start()
    scheme = "smtps" if kind == "smtps" else "smtp"
    try:
        yield parse_smtp_url(SecretStr(f"{scheme}://files:p%40ss%20word@127.0.0.1:{port}")), recorder, client_tls
    finally:
        controller.stop()


@pytest.mark.parametrize(
    ("served", "encrypted"),
    [("plain", False), ("starttls", True), ("smtps", True)],
    indirect=["served"],
)
async def test_a_code_is_sent_with_the_credentials_of_the_url_encrypted_whenever_offered(
    served: tuple[SmtpServer, Recorder, ssl.SSLContext], encrypted: bool
) -> None:
    server, recorder, client_tls = served
    mailer = Mailer(server, "Ferris Press files <files@example.com>", tls=client_tls)

    await mailer.check()
    await mailer.send_code(to="ada@example.com", seller="Ferris Press", code="K7Q2MX", minutes=10)

    assert recorder.sessions == [(encrypted, "files")]
    message = recorder.to("ada@example.com")[0]
    assert message["Subject"] == "K7Q2MX is your sign-in code for Ferris Press"
    assert message["From"] == "Ferris Press files <files@example.com>"
    assert recorder.code_for("ada@example.com") == "K7Q2MX"


@pytest.mark.parametrize("served", ["plain"], indirect=True)
async def test_wrong_credentials_are_reported_by_variable_without_the_password(
    served: tuple[SmtpServer, Recorder, ssl.SSLContext],
) -> None:
    server, _, _ = served
    wrong = SmtpServer(server.host, server.port, False, "files", SecretStr("nope-nope"))

    with pytest.raises(MailError) as raised:
        await Mailer(wrong, "files@example.com").check()

    assert str(raised.value) == f"POLAR_MCP_SMTP_URL: smtp://127.0.0.1:{server.port} refused the user name or password"


def test_credentials_travel_unencrypted_only_to_this_machine() -> None:
    remote = parse_smtp_url(SecretStr("smtp://u:p@mail.example.com"))
    local = parse_smtp_url(SecretStr("smtp://u:p@localhost:2525"))

    assert [
        may_send_credentials(remote, encrypted=False),
        may_send_credentials(remote, encrypted=True),
        may_send_credentials(local, encrypted=False),
    ] == [False, True, True]
    assert (remote.port, parse_smtp_url(SecretStr("smtps://mail.example.com")).port) == (587, 465)
