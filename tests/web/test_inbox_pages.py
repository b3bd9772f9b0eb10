"""The web inbox over HTTP: signing in, seeing requests, voting, and what the core says back."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from sqlalchemy import update

from adapters.web import WebInbox
from adapters.web.inbox import SESSION_COOKIE
from approvals.card import build_card
from approvals.directory import Destination, DestinationKind
from approvals.inbox import InboxQueries
from approvals.machine import Status
from approvals.ports import Adapter, MessageRef
from approvals.store import WriteTx
from approvals.tables import AUDIT
from tests.web.conftest import PROD, build_inbox_app, csrf_token_in
from tests.world import build_test_runtime

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def titles_in_order(html: str) -> list[str]:
    return re.findall(r'<a href="/requests/[^"]+">([^<]+)</a>', html)


# -- signing in -------------------------------------------------------------------------------


async def test_link_page_shows_a_sign_in_button_without_using_the_token(inbox):
    token = await inbox.access.create_login_token("alice")
    client = inbox.client()
    for _ in range(2):  # an unfurler's GET, then the person's own
        page = await client.get("/login", params={"token": token})
        assert page.status_code == 200
        assert '<form method="post" action="/login">' in page.text
        assert f'name="token" value="{token}"' in page.text
        assert "Sign in" in page.text
    assert SESSION_COOKIE not in client.cookies
    signed_in = await client.post("/login", data={"token": token})
    assert signed_in.status_code == 303


async def test_signing_in_sets_a_protected_cookie_and_opens_the_inbox(inbox):
    token = await inbox.access.create_login_token("alice")
    client = inbox.client()
    response = await client.post("/login", data={"token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie
    home = await client.get("/")
    assert home.status_code == 200
    assert "Signed in as <strong>alice</strong>" in home.text


async def test_cookie_is_secure_when_the_inbox_is_served_over_https(inbox):
    app = await build_inbox_app(
        build_test_runtime(inbox.store, inbox.clock, inbox.service.rules),
        public_url="https://signoff.example",
    )
    inbox.app = app
    token = await inbox.access.create_login_token("alice")
    response = await inbox.client().post("/login", data={"token": token})
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


async def test_sign_in_link_works_only_once(inbox):
    token = await inbox.access.create_login_token("alice")
    first = await inbox.client().post("/login", data={"token": token})
    assert first.status_code == 303
    again = await inbox.client().post("/login", data={"token": token})
    assert again.status_code == 403
    assert "invalid, expired or already used" in again.text
    assert "signoff login-link NAME" in again.text
    assert "set-cookie" not in again.headers


async def test_sign_in_posted_from_another_site_is_refused(inbox):
    token = await inbox.access.create_login_token("mallory")
    client = inbox.client()
    refused = await client.post(
        "/login", data={"token": token}, headers={"sec-fetch-site": "cross-site"}
    )
    assert refused.status_code == 403
    assert SESSION_COOKIE not in client.cookies
    same_site = await client.post(
        "/login", data={"token": token}, headers={"sec-fetch-site": "same-origin"}
    )
    assert same_site.status_code == 303  # the refused attempt did not use the token up


async def test_expired_sign_in_link_is_refused(inbox):
    token = await inbox.access.create_login_token("alice", ttl=timedelta(minutes=15))
    inbox.clock.advance(timedelta(minutes=15, seconds=1))
    client = inbox.client()
    assert (await client.get("/login", params={"token": token})).status_code == 200
    refused = await client.post("/login", data={"token": token})
    assert refused.status_code == 403
    assert "expired" in refused.text
    assert "signoff login-link NAME" in refused.text


@pytest.mark.parametrize("path", ["/", "/history", "/audit", "/requests/abc"])
async def test_every_page_needs_sign_in(inbox, path):
    page = await inbox.client().get(path)
    assert page.status_code == 401
    assert "Sign in needed" in page.text
    assert "signoff login-link NAME" in page.text


async def test_voting_needs_sign_in(inbox):
    request = await inbox.create()
    response = await inbox.client().post(
        f"/requests/{request.id}/approve", data={"csrf_token": "x"}
    )
    assert response.status_code == 401
    assert (await inbox.service.get(request.id)).votes == ()


async def test_a_forged_cookie_is_not_a_session(inbox):
    client = inbox.client()
    client.cookies.set(SESSION_COOKIE, "forged")
    assert (await client.get("/")).status_code == 401


async def test_signing_out_ends_the_session(inbox):
    client = await inbox.signed_in("alice")
    csrf = csrf_token_in((await client.get("/")).text)
    refused = await client.post("/logout", data={"csrf_token": "wrong"})
    assert refused.status_code == 403
    assert (await client.get("/")).status_code == 200
    cookie = client.cookies[SESSION_COOKIE]
    out = await client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert out.headers["location"] == "/login?signed_out=1"
    assert (await client.get("/")).status_code == 401
    assert await inbox.access.session(cookie) is None


# -- what each person sees --------------------------------------------------------------------


async def test_inbox_lists_the_pending_requests_a_person_approves_newest_first(inbox):
    older = await inbox.create(title="Deploy the old build")
    inbox.clock.advance(timedelta(minutes=1))
    prod = await inbox.create(action="db.migrate", title="Migrate orders", params=PROD)
    inbox.clock.advance(timedelta(minutes=1))
    await inbox.create(action="cache.flush", title="Flush the cache")  # alice only
    decided = await inbox.create(title="Already decided")
    bob = await inbox.signed_in("bob")
    csrf = await inbox.csrf_for(bob, decided.id)
    await bob.post(f"/requests/{decided.id}/approve", data={"csrf_token": csrf})

    alice_page = (await (await inbox.signed_in("alice")).get("/")).text
    assert titles_in_order(alice_page) == [
        "Flush the cache",
        "Migrate orders",
        "Deploy the old build",
    ]
    assert alice_page.count("your vote") == 3
    assert "db.migrate" in alice_page
    assert "prod-db" in alice_page
    assert "0 (first of 2)" in alice_page  # level
    assert "Pending: 0 of 2 approvals" in alice_page
    assert "2030-01-01 01:16 UTC" in alice_page  # prod-db: 15 min at level 1, then 1 h

    # carol approves prod-db only at level 2: she sees it, marked as not hers yet.
    carol_page = (await (await inbox.signed_in("carol")).get("/")).text
    assert titles_in_order(carol_page) == ["Migrate orders"]
    assert "your vote" not in carol_page
    assert "not an approver for this request at its current level" in carol_page

    erin_page = (await (await inbox.signed_in("erin")).get("/")).text
    assert titles_in_order(erin_page) == []
    assert "Nothing is waiting for you" in erin_page
    assert older.id not in erin_page
    assert prod.id not in erin_page


async def test_request_page_shows_the_full_payload_and_its_audit_trail(inbox):
    params = {"env": "prod", "table": "orders", "statements": ["ALTER TABLE orders ADD x int"]}
    request = await inbox.create(
        action="db.migrate",
        title="Migrate orders",
        details="Adds a column for the new checkout.",
        params=params,
    )
    client = await inbox.signed_in("alice")
    page = await client.get(f"/requests/{request.id}")
    assert page.status_code == 200
    html = unescape(page.text)
    for text in (
        "Migrate orders",
        "Adds a column for the new checkout.",
        "deploy-bot",
        "db.migrate",
        "prod-db",
        "needs 2 approvals",
        "a deny needs a reason",
        "2030-01-01 01:15 UTC",  # the final deadline
        "goes to level 1 at 2030-01-01 00:15 UTC",
        "Pending: 0 of 2 approvals",
        request.payload_sha256,
        "No votes yet",
    ):
        assert text in html, text
    assert '"statements": [\n    "ALTER TABLE orders ADD x int"\n  ]' in html
    assert '"table": "orders"' in html
    assert "created" in html  # the audit trail
    assert 'name="reason"' in html
    assert " required>" in html
    assert "/approve" in html
    assert "/deny" in html


async def test_unknown_or_invisible_request_is_not_found(inbox):
    request = await inbox.create()  # the default policy: alice and bob
    erin = await inbox.signed_in("erin")
    for path in ("/requests/unknown-id", "/requests/%00bad", f"/requests/{'x' * 200}"):
        page = await erin.get(path)
        assert page.status_code == 404, path
        assert "Not found" in page.text
    hidden = await erin.get(f"/requests/{request.id}")
    assert hidden.status_code == 404
    assert request.title not in hidden.text
    alice = await inbox.signed_in("alice")
    csrf = csrf_token_in((await alice.get("/")).text)
    missing = await alice.post("/requests/unknown-id/approve", data={"csrf_token": csrf})
    assert missing.status_code == 404


# -- voting -----------------------------------------------------------------------------------


async def test_approve_decides_and_says_so(inbox):
    request = await inbox.create()
    alice = await inbox.signed_in("alice")
    csrf = await inbox.csrf_for(alice, request.id)
    response = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == f"/requests/{request.id}?done=approved"
    stored = await inbox.service.get(request.id)
    assert stored.status is Status.APPROVED
    assert (stored.decision.by, stored.decision.platform) == ("alice", "web")
    page = await alice.get(response.headers["location"])
    assert "You approved this request." in page.text
    assert "Approved by alice at 2030-01-01 00:00 UTC" in page.text
    assert "/approve" not in page.text  # no forms once decided
    assert "No votes yet" not in page.text


async def test_deny_with_a_reason_records_it(inbox):
    request = await inbox.create()
    bob = await inbox.signed_in("bob")
    csrf = await inbox.csrf_for(bob, request.id)
    response = await bob.post(
        f"/requests/{request.id}/deny",
        data={"csrf_token": csrf, "reason": "Not during the freeze <b>please</b>"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/requests/{request.id}?done=denied"
    stored = await inbox.service.get(request.id)
    assert stored.status is Status.DENIED
    assert stored.decision.reason == "Not during the freeze <b>please</b>"
    page = await bob.get(response.headers["location"])
    assert "You denied this request." in page.text
    assert "Not during the freeze &lt;b&gt;please&lt;/b&gt;" in page.text


async def test_approval_towards_a_quorum_is_counted(inbox):
    request = await inbox.create(action="db.migrate", params=PROD)
    alice = await inbox.signed_in("alice")
    csrf = await inbox.csrf_for(alice, request.id)
    response = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": csrf})
    assert response.headers["location"] == f"/requests/{request.id}?done=voted"
    page = await alice.get(response.headers["location"])
    assert "needs more approvals" in page.text
    assert "Pending: 1 of 2 approvals" in page.text
    assert "alice has already voted" in page.text  # no second vote offered as hers
    again = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": csrf})
    assert again.status_code == 403
    assert "alice has already voted" in again.text


async def test_deny_without_a_reason_is_refused_when_the_policy_needs_one(inbox):
    request = await inbox.create(action="db.migrate", params=PROD)
    bob = await inbox.signed_in("bob")
    csrf = await inbox.csrf_for(bob, request.id)
    for reason in ("", "   "):
        response = await bob.post(
            f"/requests/{request.id}/deny", data={"csrf_token": csrf, "reason": reason}
        )
        assert response.status_code == 422
        assert "this policy needs a reason to deny" in response.text
        assert request.title in response.text  # the request page, with the refusal on top
    stored = await inbox.service.get(request.id)
    assert stored.status is Status.PENDING
    assert stored.votes == ()


async def test_requester_cannot_decide_their_own_request(inbox):
    request = await inbox.create(requested_by="alice")
    alice = await inbox.signed_in("alice")
    page = await alice.get(f"/requests/{request.id}")
    assert "made on your behalf" in page.text  # the hint, before anyone clicks
    csrf = csrf_token_in(page.text)
    response = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": csrf})
    assert response.status_code == 403
    assert "Your vote was not counted" in response.text
    assert "this request was made on your behalf" in response.text
    assert (await inbox.service.get(request.id)).votes == ()


async def test_non_approvers_are_refused_and_audited(inbox):
    prod = await inbox.create(action="db.migrate", title="Migrate orders", params=PROD)
    carol = await inbox.signed_in("carol")  # a level-2 approver, while level 1 decides
    csrf = await inbox.csrf_for(carol, prod.id)
    response = await carol.post(f"/requests/{prod.id}/approve", data={"csrf_token": csrf})
    assert response.status_code == 403
    assert "carol is not an approver for this request at its current level" in response.text
    assert "Migrate orders" in response.text  # she may see it, just not decide yet

    default = await inbox.create(title="Restart the web tier")
    erin = await inbox.signed_in("erin")  # approves nothing anywhere
    erin_csrf = csrf_token_in((await erin.get("/")).text)
    refused = await erin.post(f"/requests/{default.id}/deny", data={"csrf_token": erin_csrf})
    assert refused.status_code == 403
    assert "erin is not an approver" in refused.text
    assert "Restart the web tier" not in refused.text  # nothing shown she may not see

    for request in (prod, default):
        assert (await inbox.service.get(request.id)).votes == ()
        async with inbox.store.read() as reader:
            kinds = [e.kind for e in await reader.audit_entries(request_id=request.id)]
        assert kinds == ["created", "refused"]


async def test_second_decision_reports_who_already_decided(inbox):
    request = await inbox.create()
    alice = await inbox.signed_in("alice")
    bob = await inbox.signed_in("bob")
    bob_csrf = await inbox.csrf_for(bob, request.id)  # bob opened the page first
    inbox.clock.advance(timedelta(minutes=3))
    alice_csrf = await inbox.csrf_for(alice, request.id)
    await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": alice_csrf})
    late = await bob.post(
        f"/requests/{request.id}/deny", data={"csrf_token": bob_csrf, "reason": "no"}
    )
    assert late.status_code == 409
    assert "Nothing changed: already approved by alice at 2030-01-01 00:03 UTC." in late.text
    stored = await inbox.service.get(request.id)
    assert stored.status is Status.APPROVED
    assert [vote.person for vote in stored.votes] == ["alice"]


@pytest.mark.parametrize("csrf_field", [None, "", "wrong-token", "ü-not-ascii"])
async def test_vote_without_the_right_csrf_token_records_nothing(inbox, csrf_field):
    request = await inbox.create()
    alice = await inbox.signed_in("alice")
    audit_before = await inbox.audit_count()
    form = {"reason": "looks fine"}
    if csrf_field is not None:
        form["csrf_token"] = csrf_field
    for verdict in ("approve", "deny"):
        response = await alice.post(f"/requests/{request.id}/{verdict}", data=form)
        assert response.status_code == 403
        assert "did not carry a valid security token" in response.text
    stored = await inbox.service.get(request.id)
    assert stored.status is Status.PENDING
    assert stored.votes == ()
    assert await inbox.audit_count() == audit_before


async def test_one_persons_csrf_token_does_not_work_for_another(inbox):
    request = await inbox.create()
    alice = await inbox.signed_in("alice")
    bob = await inbox.signed_in("bob")
    bob_csrf = await inbox.csrf_for(bob, request.id)
    response = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": bob_csrf})
    assert response.status_code == 403
    assert (await inbox.service.get(request.id)).votes == ()


# -- bad input --------------------------------------------------------------------------------


async def test_bad_form_input_gets_a_4xx_page_and_records_nothing(inbox):
    request = await inbox.create()
    alice = await inbox.signed_in("alice")
    csrf = await inbox.csrf_for(alice, request.id)
    url = f"/requests/{request.id}/deny"
    urlencoded = {"content-type": "application/x-www-form-urlencoded"}
    cases = [
        (400, b"csrf_token=" + csrf.encode() + b"&reason=%FF%FE%00", urlencoded),
        (400, b"csrf_token=" + csrf.encode() + b"&reason=\xff\xfe", urlencoded),
        (400, b"csrf_token=" + csrf.encode() + b"&reason=a%00b", urlencoded),
        (400, b"csrf_token=" + csrf.encode() + b"&csrf_token=" + csrf.encode(), urlencoded),
        (400, b"&".join([b"f%d=x" % n for n in range(50)]), urlencoded),
        (413, b"csrf_token=" + csrf.encode() + b"&reason=" + b"x" * 1_100_000, urlencoded),
        (415, b'{"csrf_token": "' + csrf.encode() + b'"}', {"content-type": "application/json"}),
        (415, b"csrf_token=" + csrf.encode(), {}),
    ]
    for status, body, headers in cases:
        response = await alice.post(url, content=body, headers=headers)
        assert response.status_code == status, (body[:60], response.text)
        assert "The form could not be read" in response.text
        assert "Traceback" not in response.text
    too_long = await alice.post(url, data={"csrf_token": csrf, "reason": "x" * 5000})
    assert too_long.status_code == 422
    assert "the reason is longer than 2000 characters" in too_long.text
    assert (await inbox.service.get(request.id)).votes == ()


async def test_bad_audit_page_number_is_a_400(inbox):
    alice = await inbox.signed_in("alice")
    for before in ("abc", "-1", "0", "9" * 40):
        page = await alice.get("/audit", params={"before": before})
        assert page.status_code == 400, before
        assert "must be a positive entry number" in page.text


async def test_login_with_junk_is_refused_cleanly(inbox):
    client = inbox.client()
    assert (await client.post("/login", data={"token": ""})).status_code == 403
    assert (await client.post("/login", data={"token": "x" * 5000})).status_code == 403
    for junk in ("x" * 5000, "\x00abc", "ab\u202ecd"):
        link = await client.get("/login", params={"token": junk})
        assert link.status_code == 403
        assert "invalid, expired or already used" in link.text
    junk = await client.post(
        "/login",
        content=b"token=%FF",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert junk.status_code == 400


# -- untrusted agent text ---------------------------------------------------------------------


async def test_agent_text_is_escaped_everywhere(inbox):
    script = "<script>alert(1)</script>"
    request = await inbox.create(
        title=f"Deploy {script}",
        details='<img src=x onerror="alert(2)"> and </pre><script>alert(3)</script>',
        params={"cmd": "</pre><script>alert(4)</script>", "<b>key</b>": "\"'&"},
    )
    alice = await inbox.signed_in("alice")
    pages = [await alice.get("/"), await alice.get(f"/requests/{request.id}")]
    csrf = csrf_token_in(pages[1].text)
    await alice.post(f"/requests/{request.id}/deny", data={"csrf_token": csrf, "reason": script})
    pages += [
        await alice.get("/history"),
        await alice.get(f"/requests/{request.id}"),
        await alice.get("/audit"),
    ]
    for page in pages:
        assert page.status_code == 200
        # The only script is the inbox's own, on pages about pending requests.
        scripts = re.findall(r"<script\b[^>]*>", page.text, flags=re.IGNORECASE)
        assert scripts in ([], ['<script src="/static/live.js" defer>']), scripts
        assert "<img" not in page.text
        assert "<b>key" not in page.text
    assert "Deploy &lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].text
    detail = pages[1].text
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in detail
    assert "&lt;/pre&gt;&lt;script&gt;alert(4)&lt;/script&gt;" in detail


async def test_bidi_controls_and_zero_width_characters_are_shown_visibly(inbox):
    request = await inbox.create(
        title="Pay invoice\u202egpj.exe",
        details="zero\u200bwidth and \ufeffBOM and \u2066isolate\u2069",
        params={"file\u200d": "evil\u202atext", "note": "tab\tstays"},
    )
    alice = await inbox.signed_in("alice")
    for page in (await alice.get("/"), await alice.get(f"/requests/{request.id}")):
        text = page.text
        assert "Pay invoice⟨U+202E⟩gpj.exe" in text
        for char in "\u202e\u200b\ufeff\u2066\u2069\u200d\u202a":
            assert char not in text
    detail = unescape((await alice.get(f"/requests/{request.id}")).text)
    assert "zero⟨U+200B⟩width and ⟨U+FEFF⟩BOM and ⟨U+2066⟩isolate⟨U+2069⟩" in detail
    assert '"file⟨U+200D⟩": "evil⟨U+202A⟩text"' in detail
    assert '"note": "tab\\tstays"' in detail


async def test_long_payloads_are_shown_whole(inbox):
    huge = "y" * 100_000
    request = await inbox.create(params={"blob": huge})
    alice = await inbox.signed_in("alice")
    page = await alice.get(f"/requests/{request.id}")
    assert page.status_code == 200
    assert huge in page.text


async def test_security_headers_are_on_every_page(inbox):
    request = await inbox.create()
    token = await inbox.access.create_login_token("alice")
    alice = await inbox.signed_in("alice")
    anonymous = inbox.client()
    responses = [
        await anonymous.get("/"),
        await anonymous.get("/login", params={"token": token}),
        await anonymous.post("/login", data={"token": "nope"}),
        await anonymous.get("/static/inbox.css"),
        await alice.get("/"),
        await alice.get(f"/requests/{request.id}"),
        await alice.get("/requests/unknown"),
        await alice.get("/history"),
        await alice.get("/audit"),
        await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": "bad"}),
    ]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
    assert responses[3].headers["content-type"].startswith("text/css")


# -- history and audit ------------------------------------------------------------------------


async def test_history_lists_decided_requests_with_who_when_and_why(inbox):
    approved = await inbox.create(title="Deploy A")
    inbox.clock.advance(timedelta(minutes=1))
    denied = await inbox.create(title="Deploy B")
    await inbox.create(title="Still pending")
    hidden = await inbox.create(action="cache.flush", title="Alice-only flush")
    alice = await inbox.signed_in("alice")
    bob = await inbox.signed_in("bob")
    csrf = await inbox.csrf_for(alice, approved.id)
    await alice.post(f"/requests/{approved.id}/approve", data={"csrf_token": csrf})
    await alice.post(f"/requests/{hidden.id}/approve", data={"csrf_token": csrf})
    inbox.clock.advance(timedelta(minutes=5))
    bob_csrf = await inbox.csrf_for(bob, denied.id)
    await bob.post(
        f"/requests/{denied.id}/deny", data={"csrf_token": bob_csrf, "reason": "too risky"}
    )

    history = (await bob.get("/history")).text
    assert titles_in_order(history) == ["Deploy B", "Deploy A"]  # latest decision first
    assert "too risky" in history
    assert "2030-01-01 00:06 UTC" in history
    assert "2030-01-01 00:01 UTC" in history
    assert "Still pending" not in history
    assert "Alice-only flush" not in history  # bob approves nothing under that policy
    assert "approved" in history
    assert "denied" in history


async def test_audit_page_shows_the_chain_verification_and_pages_back(inbox):
    for number in range(60):
        await inbox.create(title=f"Request {number}")
    alice = await inbox.signed_in("alice")
    page = await alice.get("/audit")
    assert page.status_code == 200
    assert "chain verified: 60 entries" in page.text
    seqs = [int(seq) for seq in re.findall(r"<tr>\s*<td data-label=\"Seq\">(\d+)</td>", page.text)]
    assert seqs == list(range(60, 10, -1))  # newest first, one page
    assert 'href="/audit?before=11"' in page.text
    older = await alice.get("/audit", params={"before": "11"})
    older_seqs = [
        int(seq) for seq in re.findall(r"<tr>\s*<td data-label=\"Seq\">(\d+)</td>", older.text)
    ]
    assert older_seqs == list(range(10, 0, -1))
    assert "Older entries" not in older.text
    assert 'href="/audit">Newest</a>' in older.text

    def _change(tx: WriteTx) -> None:
        tx.conn.execute(update(AUDIT).where(AUDIT.c.seq == 7).values(actor="mallory"))

    await inbox.store.run(_change)
    tampered = await alice.get("/audit")
    assert "BROKEN at entry 7" in tampered.text
    assert "chain verified" not in tampered.text


# -- the adapter contract ---------------------------------------------------------------------


async def test_inbox_is_an_adapter_whose_cards_live_in_the_store(inbox):
    web = WebInbox(InboxQueries(inbox.service), inbox.access, public_url="http://127.0.0.1:8080")
    assert isinstance(web, Adapter)
    assert web.platform == "web"
    request = await inbox.create()
    card = build_card(request)
    await web.start(inbox.service)
    assert await web.check_health() is True
    ref = await web.send(card, Destination("web", DestinationKind.CHANNEL, "inbox"))
    assert ref == MessageRef("web", {"request_id": request.id})
    await web.edit(ref, card)
    await web.reply(ref, card, "Reminder")
    await web.stop()


async def test_an_unexpected_failure_shows_a_short_page_without_details(inbox, monkeypatch):
    request = await inbox.create()
    alice = await inbox.signed_in("alice")
    csrf = await inbox.csrf_for(alice, request.id)

    async def broken_vote(command):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(inbox.service, "vote", broken_vote)
    response = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": csrf})
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
