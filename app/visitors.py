"""Who is visiting: in a hosted kitchen, each visitor's own space, the presenter, and the workshop's access code.

Local mode has one person, the owner: they see and may do everything, as the dashboard always did. Hosted mode
(engine/config.py) gives each visitor an identity, kept across a page reload:
- where Streamlit's login is configured (an `[auth]` section in `.streamlit/secrets.toml`, see the README), the
  visitor logs in with the identity provider and their identity is `st.user`'s (a hash of its email or subject);
- otherwise a random identity is made on the first visit and kept in a cookie (`kitchen_visitor`, 30 days,
  SameSite=Strict), signed with a key only the server holds (and the access code, if one is set). The cookie is
  written by a line of script on the page, and read back by the server when the browser
  connects again, e.g. on a reload: so the same browser is the same visitor.
The presenter unlocks their rights in the sidebar with `presenter_password` from `[kitchen]` in the secrets file;
that lasts for the browser session (a reload asks again: the password is never stored in the browser). A workshop
can put the whole site behind `access_code` (same section): a visitor without a valid cookie types it once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app.hosting import kitchen_config
from engine.store import RunStore
from engine.trace import data_dir

COOKIE = "kitchen_visitor"
COOKIE_DAYS = 30
VISITOR_KEY = "visitor_id"  # session state: this session's visitor identity
PRESENTER_KEY = "visitor_presenter"  # session state: True once the presenter password was given
KEY_FILE = ".visitor-key"  # in the data folder: the server's signing key, made once, readable by its user only


@dataclass(frozen=True)
class Visitor:
    """The person behind this browser session: whose runs are theirs, and whether they hold the presenter's rights."""

    id: str  # "" in local mode (the owner); else a stable, anonymous identity
    presenter: bool  # may relabel, delete, share, cancel anyone's request and load models
    how: str  # "local", "login" (st.user) or "cookie"

    @property
    def hosted(self) -> bool:
        """True when this is one visitor among many (hosted mode)."""
        return self.how != "local"


def kitchen_secret(name: str) -> str | None:
    """A value from `[kitchen]` in .streamlit/secrets.toml, or None (no file, no section, or empty)."""
    try:
        section = st.secrets.get("kitchen")
    except FileNotFoundError:  # no secrets file at all
        return None
    value = section.get(name) if section is not None and hasattr(section, "get") else None
    return str(value) if value else None


def login_configured() -> bool:
    """True when Streamlit's OIDC login is set up in the secrets file (its `[auth]` section)."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:
        return False


def signing_key() -> bytes:
    """The key visitor cookies are signed with: the server's own (made once) and the access code, if any."""
    path = data_dir() / KEY_FILE
    try:
        key = path.read_text(encoding="ascii").strip()
    except OSError:
        key = ""
    if len(key) < 32:
        key = secrets.token_hex(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(key, encoding="ascii")
    return f"{key}:{kitchen_secret('access_code') or ''}".encode()


def signed_token(visitor: str) -> str:
    """The cookie value for a visitor identity."""
    signature = hmac.new(signing_key(), visitor.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{visitor}.{signature}"


def visitor_from_token(token: str | None) -> str | None:
    """The identity in a cookie value whose signature is this server's (and current access code's), else None."""
    if not token or token.count(".") != 1:
        return None
    visitor = token.split(".")[0]
    return visitor if hmac.compare_digest(signed_token(visitor), token) else None


def cookie_token() -> str | None:
    """The visitor cookie the browser sent when it connected (None outside a server, or without one)."""
    try:
        return st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no browser context (a test harness): no cookie
        return None


def remember_in_browser(visitor: str) -> None:
    """Write the signed identity into a cookie, so a reload of this browser is the same visitor."""
    token = json.dumps(signed_token(visitor))  # hex and a dot only; json quotes it for the script
    script = (
        f"<script>document.cookie = '{COOKIE}=' + {token} + "
        f"'; path=/; max-age={COOKIE_DAYS * 86400}; SameSite=Strict';</script>"
    )
    st.sidebar.html(script, unsafe_allow_javascript=True)  # our own script with our own token: nothing from a visitor


def ask_access_code(code: str) -> None:
    """The workshop's door: a box for the access code; stops the page until it is given."""
    st.title("🍳 Inference Kitchen")
    with st.form("visitor_access"):
        typed = st.text_input("Access code", type="password", help="The workshop's organiser gives it out.")
        entered = st.form_submit_button("Enter")
    if entered and hmac.compare_digest(typed.strip().encode(), code.encode()):
        return
    if entered:
        st.error("That is not this workshop's access code.")
    st.stop()


def current_visitor() -> Visitor:
    """This session's visitor; in hosted mode asks for a login or the access code first when they are configured."""
    if not kitchen_config().hosted:
        return Visitor(id="", presenter=True, how="local")
    presenter = st.session_state.get(PRESENTER_KEY) is True
    if login_configured():
        if not st.user.is_logged_in:
            st.title("🍳 Inference Kitchen")
            st.button("Log in", on_click=st.login, type="primary")
            st.stop()
        who = str(st.user.get("email") or st.user.get("sub") or "")
        st.session_state[VISITOR_KEY] = "login-" + hashlib.sha256(who.encode()).hexdigest()[:24]
        return Visitor(id=st.session_state[VISITOR_KEY], presenter=presenter, how="login")
    from_cookie = visitor_from_token(cookie_token())
    if VISITOR_KEY not in st.session_state:
        if from_cookie is None:
            code = kitchen_secret("access_code")
            if code is not None:
                ask_access_code(code)
        st.session_state[VISITOR_KEY] = from_cookie or "v-" + secrets.token_hex(12)
    known = st.session_state[VISITOR_KEY]
    if from_cookie != known:
        remember_in_browser(known)  # on every run until the browser brings the cookie back (it may miss one)
    return Visitor(id=known, presenter=presenter, how="cookie")


def visitor_card(visitor: Visitor) -> None:
    """Hosted mode: a line in the sidebar saying whose space this is, and the presenter's unlock."""
    if not visitor.hosted:
        return
    kept = "your login" if visitor.how == "login" else "a cookie in this browser"
    st.sidebar.caption(
        f"🪪 You are visitor **{visitor.id[-6:]}** (kept by {kept}). You see your own runs and the ones the "
        "presenter shared; nobody else sees yours."
    )
    presenter_box(visitor)


def presenter_box(visitor: Visitor) -> None:
    """The sidebar's presenter unlock (hosted mode, when a presenter password is configured)."""
    password = kitchen_secret("presenter_password")
    if not visitor.hosted or password is None:
        return
    with st.sidebar.expander("🎤 Presenter" + (": unlocked" if visitor.presenter else "")):
        if visitor.presenter:
            st.caption("You may relabel, delete and share runs, stop anyone's request and load models.")
            if st.button("Lock", key="visitor_lock"):
                st.session_state[PRESENTER_KEY] = False
                st.rerun()
            return
        with st.form("visitor_presenter_form", border=False):
            typed = st.text_input("Presenter password", type="password")
            unlock = st.form_submit_button("Unlock")
        if unlock:
            if hmac.compare_digest(typed.encode(), password.encode()):
                st.session_state[PRESENTER_KEY] = True
                st.rerun()
            st.error("Wrong password.")


def visitor_id() -> str:
    """This session's visitor identity ("" in local mode, or before current_visitor ran: the host)."""
    return str(st.session_state.get(VISITOR_KEY, "")) if kitchen_config().hosted else ""


def may_load_models() -> bool:
    """True for whoever may start a model (local mode's owner, a hosted kitchen's presenter)."""
    return not kitchen_config().hosted or st.session_state.get(PRESENTER_KEY) is True


def visible_files(paths: list[Path]) -> list[Path]:
    """The saved runs (trace or result files) this visitor may see: all of them in local mode and for the presenter,
    else their own and the shared ones (a hosted kitchen never shows one visitor's run, or prompt, to another)."""
    if may_manage_runs():
        return paths
    access, me = RunStore().access(), visitor_id()
    marks = [access.get(f"{path.parent.name}/{path.name}", {}) for path in paths]
    return [
        path for path, mark in zip(paths, marks, strict=True) if mark.get("shared") or (me and mark.get("owner") == me)
    ]


def may_manage_runs() -> bool:
    """True for whoever may relabel, delete and share any run, and stop anyone's request."""
    return may_load_models()
