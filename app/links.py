"""Pages behind the links in our emails, so a person can click them."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse

from app.errors import UserError
from app.services import accounts

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:4rem auto}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=body), status_code=status)


async def verify_email_page(request: Request) -> HTMLResponse:
    try:
        user = await accounts.verify_email(
            rt=request.app.state.rt, token=request.query_params.get("token", "")
        )
    except UserError as error:
        return _page("Link not valid", f"<p>{escape(error.message)}</p>", status=400)
    return _page("Email verified", f"<p>Thank you, {escape(user.email)} is verified.</p>")


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
