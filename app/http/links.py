"""Pages behind the links in our emails, so a person can click them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse

from app.accounts import accounts
from app.core.errors import UserError
from db.models import User

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:4rem auto}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=body), status_code=status)


async def _follow(
    request: Request, follow: Callable[..., Awaitable[User]], done: str, text: str
) -> HTMLResponse:
    """A link that does its work when opened: ``follow(rt=, token=)`` the user, then
    ``done`` with ``text`` (``{email}`` is the user's address)."""
    try:
        user = await follow(rt=request.app.state.rt, token=request.query_params.get("token", ""))
    except UserError as error:
        return _page("Link not valid", f"<p>{escape(error.message)}</p>", status=400)
    return _page(done, f"<p>{text.format(email=escape(user.email))}</p>")


async def verify_email_page(request: Request) -> HTMLResponse:
    return await _follow(
        request, accounts.verify_email, "Email verified", "Thank you, {email} is verified."
    )


async def confirm_email_change_page(request: Request) -> HTMLResponse:
    return await _follow(
        request,
        accounts.confirm_email_change,
        "Email changed",
        "Sign in with {email} from now on.",
    )


async def reset_password_page(request: Request) -> HTMLResponse:
    token = request.query_params.get("token", "")
    if request.method == "POST":
        form = await request.form()
        token = str(form.get("token", ""))
        try:
            await accounts.reset_password(
                rt=request.app.state.rt, token=token, new_password=str(form.get("password", ""))
            )
        except UserError as error:
            return _page("Password not changed", f"<p>{escape(error.message)}</p>", status=400)
        return _page("Password changed", "<p>Sign in with your new password.</p>")
    hidden = escape(token, quote=True)
    form_html = (
        f'<form method="post"><input type="hidden" name="token" value="{hidden}">'
        '<label>New password <input type="password" name="password" minlength="10" required>'
        "</label> <button>Set password</button></form>"
    )
    return _page("Choose a new password", form_html)
