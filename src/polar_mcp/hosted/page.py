"""The sign-in page: server-rendered HTML, no JavaScript, one form per step.

`/authorize` sends the browser to `/signin/<flow>`. The steps, each a POST back to the same address
with a CSRF token bound to the flow and the browser: the e-mail (a code is sent to any address that
asks, so the answer never tells whether it is a customer's), the code (6 characters, 10 minutes, 5
tries, single use), the lookup of the customer with the organization token (only now), a choice
when one e-mail is several customers, and the consent that names the app (as the app calls itself)
and where it sends the buyer back. Allowing redirects there with an authorization code.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.provider import construct_redirect_uri
from mcp.shared.auth import OAuthClientInformationFull
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from polar_mcp.hosted.keys import new_code, new_secret, normalise_code
from polar_mcp.hosted.mail import MailError
from polar_mcp.hosted.provider import CODE_PREFIX
from polar_mcp.hosted.service import Hosted
from polar_mcp.hosted.store import Flow
from polar_mcp.polar.customers import customers_by_email, team_owner
from polar_mcp.polar.errors import ForbiddenError, PolarError
from polar_mcp.untrusted import clean_text

logger = logging.getLogger(__name__)

BROWSER_COOKIE = "polar_mcp_browser"
MAX_EMAIL = 254
MAX_FORM = 16_384
_EMAIL = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+")

STYLE = """
body{font:17px/1.5 system-ui,sans-serif;margin:0;background:#f6f6f4;color:#1a1a1a}
main{max-width:26rem;margin:0 auto;padding:1.5rem 1rem}
h1{font-size:1.35rem;margin:0 0 .25rem}
p.sub{margin:0 0 1.25rem;color:#555}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input[type=email],input[type=text]{box-sizing:border-box;width:100%;font-size:1.1rem;padding:.6rem;
border:1px solid #888;border-radius:6px}
input[aria-invalid=true]{border-color:#b00020;border-width:2px}
.error{color:#b00020;margin:.3rem 0 0}
button{font-size:1.05rem;padding:.65rem 1.1rem;border-radius:6px;border:1px solid #1a1a1a;background:#1a1a1a;
color:#fff;margin:1rem .5rem 0 0;cursor:pointer}
button.secondary{background:#fff;color:#1a1a1a}
:focus-visible{outline:3px solid #2b6cb0;outline-offset:2px}
fieldset{border:0;padding:0;margin:1rem 0 0}
.choice{display:flex;gap:.5rem;align-items:center;margin:.4rem 0}
.app{background:#fff;border:1px solid #ccc;border-radius:6px;padding: .75rem;margin:1rem 0}
.note{color:#555;font-size:.9rem}
"""


def client_address(scope: Mapping[str, Any], trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The address of whoever sent the request: X-Forwarded-For is believed only from trusted proxies,
    read from the right, up to the first address that is not one of them."""
    peer = str((scope.get("client") or ("unknown", 0))[0])
    if not trusted or not _trusted(peer, trusted):
        return peer
    forwarded = ",".join(
        bytes(value).decode("latin-1")
        for key, value in scope.get("headers", [])
        if bytes(key).lower() == b"x-forwarded-for"
    )
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _trusted(address: str, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


@dataclass(frozen=True)
class Screen:
    """One rendered step: its title, body and status."""

    title: str
    body: str
    status: int = 200
    form_target: str | None = None


class SigninPage:
    """GET and POST of `/signin/{flow}`."""

    def __init__(self, hosted: Hosted) -> None:
        self._hosted = hosted

    async def handle(self, request: Request) -> Response:
        hosted = self._hosted
        flow_id = str(request.path_params.get("flow", ""))
        flow = await hosted.store.flow(hosted.keys.digest("flow", flow_id), hosted.clock()) if flow_id else None
        browser = request.cookies.get(BROWSER_COOKIE) or ""
        new_browser = None
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", browser):
            browser = new_browser = new_secret()
        if flow is None:
            return self._respond(
                Screen("This sign-in has expired", _p("Start again from your assistant."), 404), "", ""
            )
        browser_hash = hosted.keys.digest("browser", browser)
        if flow.browser_hash is None:
            await hosted.store.update_flow(flow.flow_hash, browser_hash=browser_hash)
        elif not hmac.compare_digest(flow.browser_hash, browser_hash):
            screen = Screen(
                "This sign-in was started in another browser",
                _p("For your safety it can only be finished there. Start again from your assistant."),
                403,
            )
            return self._respond(screen, flow_id, browser, new_browser)
        if request.method == "POST":
            form = await _form(request)
            if form is None or not hosted.keys.csrf_valid(flow_id, browser, form.get("csrf", "")):
                screen = Screen(
                    "Please try again",
                    _p(
                        "This form was out of date or did not come from this page. "
                        f'<a href="/signin/{escape(flow_id)}">Back to the sign-in</a>'
                    ),
                    400,
                )
                return self._respond(screen, flow_id, browser, new_browser)
            result = await self._step(request, flow, form)
            if isinstance(result, Response):
                return result
            return self._respond(result, flow_id, browser, new_browser)
        client = await self._client(flow)
        return self._respond(await self._current(flow, client), flow_id, browser, new_browser)

    # Steps ---------------------------------------------------------------------------------------

    async def _step(self, request: Request, flow: Flow, form: dict[str, str]) -> Screen | Response:
        action = form.get("action", "")
        client = await self._client(flow)
        if flow.finished:
            return _finished()
        if action == "email":
            return await self._send_code(request, flow, client, form.get("email", ""))
        if action == "resend" and flow.email is not None and not flow.verified:
            return await self._send_code(request, flow, client, flow.email)
        if action == "restart" and not flow.verified:
            await self._hosted.store.update_flow(flow.flow_hash, email=None, code_hash=None, code_tries=0)
            return self._email_screen("")
        if action == "code" and flow.email is not None and not flow.verified:
            return await self._check_code(request, flow, client, form.get("code", ""))
        if action == "choose" and flow.verified and flow.choices and flow.customer_id is None:
            chosen = [choice for choice in flow.choices if choice["id"] == form.get("customer", "")]
            if not chosen:
                return self._choice_screen(flow.choices, "Choose one of the accounts.")
            return await self._bind(flow, client, chosen[0])
        if action in ("allow", "deny") and flow.customer_id is not None:
            return await self._decide(flow, allow=action == "allow")
        return await self._current(flow, client)

    async def _current(self, flow: Flow, client: OAuthClientInformationFull | None) -> Screen:
        if flow.finished:
            return _finished()
        if flow.customer_id is not None:
            return self._consent_screen(client, flow)
        if flow.verified:
            if flow.choices:
                return self._choice_screen(flow.choices, "")
            return self._no_purchases(flow.email or "")
        if flow.email is not None:
            return self._code_screen(flow.email, "")
        return self._email_screen("")

    async def _send_code(
        self, request: Request, flow: Flow, client: OAuthClientInformationFull | None, typed: str
    ) -> Screen:
        hosted = self._hosted
        email = typed.strip()
        if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email):
            return self._email_screen("Enter an e-mail address such as name@example.com.", email)
        now, address = hosted.clock(), client_address(request.scope, hosted.options.trusted_proxies)
        per_address, per_email = hosted.limits.codes_per_address, hosted.limits.codes_per_email
        allowed = await hosted.store.hit(
            "code-address:" + hosted.keys.digest("address", address),
            limit=per_address[0],
            window=per_address[1],
            now=now,
        ) and await hosted.store.hit(
            "code-email:" + hosted.keys.digest("email", email.lower()), limit=per_email[0], window=per_email[1], now=now
        )
        if not allowed:
            return self._email_screen("Too many codes were asked for. Wait a few minutes, then try again.", email, 429)
        code = new_code()
        await hosted.store.update_flow(
            flow.flow_hash,
            email=email,
            code_hash=hosted.keys.digest("code", code),
            code_expires_at=now + hosted.limits.code_minutes * 60,
            code_tries=0,
        )
        try:
            await hosted.mailer.send_code(
                to=email, seller=hosted.seller.name, code=code, minutes=hosted.limits.code_minutes
            )
        except MailError as error:
            logger.warning("could not send a sign-in code: %s", error)
            await hosted.store.update_flow(flow.flow_hash, email=None, code_hash=None)
            return self._email_screen("The code could not be sent just now. Try again in a minute.", email, 503)
        logger.info("sent a sign-in code for client %s", flow.client_id)
        return self._code_screen(email, "")

    async def _check_code(
        self, request: Request, flow: Flow, client: OAuthClientInformationFull | None, typed: str
    ) -> Screen:
        hosted = self._hosted
        email = flow.email or ""
        now, address = hosted.clock(), client_address(request.scope, hosted.options.trusted_proxies)
        tries_limit, window = hosted.limits.tries_per_address
        if not await hosted.store.hit(
            "code-try:" + hosted.keys.digest("address", address), limit=tries_limit, window=window, now=now
        ):
            return self._code_screen(email, "Too many tries from here. Wait a few minutes, then try again.", 429)
        tries = await hosted.store.count_code_try(flow.flow_hash)
        code = normalise_code(typed)
        if flow.code_hash is None or tries > hosted.limits.code_tries:
            return self._code_screen(email, "Too many wrong codes. Ask for a new code.", 400)
        if flow.code_expires_at is None or flow.code_expires_at <= now:
            return self._code_screen(email, "This code has expired. Ask for a new code.", 400)
        if not hmac.compare_digest(hosted.keys.digest("code", code), flow.code_hash):
            left = hosted.limits.code_tries - tries
            hint = f" {left} tries left." if left > 0 else " Ask for a new code."
            return self._code_screen(email, "That code is not right." + hint, 400)
        # The code is spent before anything else: it can never be used twice.
        await hosted.store.update_flow(flow.flow_hash, code_hash=None, verified=True)
        logger.info("a sign-in code was confirmed for client %s", flow.client_id)
        try:
            matches = await customers_by_email(hosted.polar, hosted.options.access_token, email)
        except PolarError as error:
            logger.warning("looking the customer up failed: %s", error.message)
            await hosted.store.update_flow(flow.flow_hash, verified=False)
            return self._code_screen(email, "Your purchases could not be looked up just now. Ask for a new code.", 503)
        choices = [
            {"id": match.id, "name": clean_text(match.name or match.email, 100), "type": match.type or "individual"}
            for match in matches
        ]
        await hosted.store.update_flow(flow.flow_hash, choices=choices)
        if len(choices) == 1:
            return await self._bind(flow, client, choices[0])
        if not choices:
            return self._no_purchases(email)
        return self._choice_screen(choices, "")

    async def _bind(self, flow: Flow, client: OAuthClientInformationFull | None, choice: dict[str, str]) -> Screen:
        """Remember which customer (and, for a team, which member: its owner) the buyer is."""
        hosted = self._hosted
        member_id = None
        if choice.get("type") == "team":
            try:
                member_id = await team_owner(hosted.polar, hosted.options.access_token, choice["id"], flow.email or "")
            except ForbiddenError:
                logger.warning("a team customer signed in: its sessions need POLAR_ACCESS_TOKEN with members:read")
                return self._team_screen()
            except PolarError as error:
                logger.warning("looking the team's owner up failed: %s", error.message)
                return Screen("Please try again later", _p("Your purchases could not be looked up just now."), 503)
            if member_id is None:
                return self._team_screen()
        await hosted.store.update_flow(flow.flow_hash, customer_id=choice["id"], member_id=member_id)
        return self._consent_screen(client, flow)

    async def _decide(self, flow: Flow, *, allow: bool) -> Response | Screen:
        hosted = self._hosted
        if not await hosted.store.finish_flow(flow.flow_hash):
            return _finished()
        params = flow.params
        if not allow:
            target = construct_redirect_uri(
                params["redirect_uri"], error="access_denied", state=params.get("state"), iss=self._issuer()
            )
            return _redirect(target)
        assert flow.customer_id is not None
        code = new_secret(CODE_PREFIX)
        await hosted.store.add_code(
            hosted.keys.digest("code", code),
            flow.client_id,
            (flow.customer_id, flow.member_id),
            params,
            hosted.clock() + hosted.lifetimes.authorization_code,
        )
        target = construct_redirect_uri(
            params["redirect_uri"], code=code, state=params.get("state"), iss=self._issuer()
        )
        return _redirect(target)

    def _issuer(self) -> str:
        return self._hosted.options.public_url

    async def _client(self, flow: Flow) -> OAuthClientInformationFull | None:
        found = await self._hosted.store.client(flow.client_id)
        return OAuthClientInformationFull.model_validate_json(found[0]) if found else None

    # Screens -------------------------------------------------------------------------------------

    def _seller(self) -> str:
        return escape(self._hosted.seller.name)

    def _email_screen(self, error: str, email: str = "", status: int = 200) -> Screen:
        body = (
            _p(f"Enter the e-mail you used to buy from {self._seller()}. We will send you a code.")
            + _field("email", "E-mail", "email", email, error, autocomplete="email")
            + _button("email", "Send me a code")
        )
        return Screen(f"Sign in to your {self._seller()} purchases", body, 400 if error and status == 200 else status)

    def _code_screen(self, email: str, error: str, status: int = 200) -> Screen:
        minutes = self._hosted.limits.code_minutes
        body = (
            _p(
                f"If {escape(email)} can receive mail, a 6-character code is on its way from {self._seller()}. "
                f"It works once, for {minutes} minutes."
            )
            + _field("code", "Code from the e-mail", "text", "", error, autocomplete="one-time-code", size=8)
            + _button("code", "Continue")
            + _button("resend", "Send a new code", secondary=True)
            + _button("restart", "Use another e-mail", secondary=True)
        )
        return Screen("Check your e-mail", body, 400 if error and status == 200 else status)

    def _choice_screen(self, choices: list[dict[str, str]], error: str) -> Screen:
        options = "".join(
            f'<div class="choice"><input type="radio" name="customer" id="c{index}" value="{escape(choice["id"])}"'
            f"{' checked' if index == 0 else ''}>"
            f'<label for="c{index}" style="margin:0;font-weight:400">{escape(choice["name"])}</label></div>'
            for index, choice in enumerate(choices)
        )
        error_html = f'<p class="error" id="customer-error" role="alert">{escape(error)}</p>' if error else ""
        body = (
            _p(f"This e-mail has several accounts with {self._seller()}. Which one's purchases?")
            + f'<fieldset aria-describedby="customer-error"><legend class="note">Accounts</legend>{options}</fieldset>'
            + error_html
            + _button("choose", "Continue")
        )
        return Screen("Choose an account", body, 400 if error else 200)

    def _no_purchases(self, email: str) -> Screen:
        body = _p(
            f"There are no purchases from {self._seller()} for {escape(email)}. A member of a team signs in with "
            "the team's e-mail, or asks its owner."
        ) + _p("If you bought with another e-mail, start again from your assistant and use that one.")
        return Screen(f"No purchases from {self._seller()} for this e-mail", body)

    def _team_screen(self) -> Screen:
        body = _p(
            f"This e-mail's purchases from {self._seller()} belong to a team, which this connector cannot open "
            f"yet. Ask {self._seller()} about access."
        )
        return Screen("Team purchases", body)

    def _consent_screen(self, client: OAuthClientInformationFull | None, flow: Flow) -> Screen:
        given = clean_text(client.client_name, 100) if client is not None and client.client_name else ""
        name = given or "An app without a name"
        host = urlsplit(str(flow.params["redirect_uri"]))
        where = host.hostname or host.scheme + ":"
        body = (
            '<div class="app">'
            f"<p><strong>{escape(name)}</strong> <span class=note>(the name the app gives itself)</span></p>"
            f"<p class=note>It will send you back to <strong>{escape(where)}</strong>.</p>"
            "</div>"
            + _p(
                f"It asks to list and download your purchases from {self._seller()}. It cannot buy, change or "
                "see anything else. You can end its access by signing out of it."
            )
            + _button("allow", "Allow")
            + _button("deny", "Deny", secondary=True)
        )
        return Screen("Allow this app?", body, form_target=_form_source(str(flow.params["redirect_uri"])))

    # Rendering -----------------------------------------------------------------------------------

    def _respond(self, screen: Screen, flow_id: str, browser: str, new_browser: str | None = None) -> Response:
        csrf = self._hosted.keys.csrf_token(flow_id, browser) if flow_id else ""
        seller = self._seller()
        form = (
            f'<form method="post" action="/signin/{escape(flow_id)}" novalidate>'
            f'<input type="hidden" name="csrf" value="{csrf}">{screen.body}</form>'
            if flow_id and screen.status not in (403, 404)
            else screen.body
        )
        html = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="referrer" content="no-referrer"><title>{screen.title} · {seller}</title>'
            f"<style>{STYLE}</style></head><body><main>"
            f'<p class="sub">{seller}</p><h1>{screen.title}</h1>{form}</main></body></html>'
        )
        response = HTMLResponse(html, status_code=screen.status, headers=self._security_headers(screen.form_target))
        if new_browser is not None:
            response.set_cookie(
                BROWSER_COOKIE,
                new_browser,
                max_age=86400,
                path="/signin",
                secure=not self._hosted.options.loopback_http,
                httponly=True,
                samesite="lax",
            )
        return response

    def _security_headers(self, form_target: str | None) -> dict[str, str]:
        targets = "'self'" + (f" {form_target}" if form_target else "")
        return {
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'unsafe-inline'; form-action {targets}; "
                "frame-ancestors 'none'; base-uri 'none'"
            ),
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }


def _finished() -> Screen:
    return Screen("You are signed in", _p("You can close this page and go back to your assistant."))


def _redirect(target: str) -> RedirectResponse:
    return RedirectResponse(
        target, status_code=303, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


def _form_source(redirect_uri: str) -> str:
    """The CSP source that lets the consent form's redirect reach the app (browsers check redirects too)."""
    parts = urlsplit(redirect_uri)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:"


def _p(text: str) -> str:
    return f"<p>{text}</p>"


def _field(
    name: str, label: str, kind: str, value: str, error: str, *, autocomplete: str, size: int | None = None
) -> str:
    described = f' aria-describedby="{name}-error" aria-invalid="true"' if error else ""
    extra = f' size="{size}" maxlength="12" autocapitalize="characters" spellcheck="false"' if size else ""
    error_html = f'<p class="error" id="{name}-error" role="alert">{escape(error)}</p>' if error else ""
    return (
        f'<label for="{name}">{label}</label>'
        f'<input id="{name}" name="{name}" type="{kind}" value="{escape(value)}" autocomplete="{autocomplete}" '
        f"required autofocus{described}{extra}>{error_html}"
    )


def _button(action: str, label: str, *, secondary: bool = False) -> str:
    css = ' class="secondary"' if secondary else ""
    return f'<button type="submit" name="action" value="{action}"{css}>{label}</button>'


async def _form(request: Request) -> dict[str, str] | None:
    if int(request.headers.get("content-length") or 0) > MAX_FORM:
        return None
    form = await request.form(max_files=0, max_fields=20)
    return {key: value for key, value in form.items() if isinstance(value, str)}
