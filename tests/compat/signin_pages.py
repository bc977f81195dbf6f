"""A tiny form-filling user agent for Keyward's sign-in pages (no JavaScript).

It parses the page's forms with the standard library's HTMLParser and fills inputs by their
`autocomplete` token, as a password manager would; cookies live in the httpx client's jar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx


@dataclass
class Form:
    action: str
    inputs: list[dict[str, str]] = field(default_factory=list)

    @property
    def step(self) -> str:
        return next((i.get("value", "") for i in self.inputs if i.get("name") == "step"), "")


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.ids: dict[str, str] = {}
        self.title = ""
        self._in_form = False
        self._capture: str | None = None
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(action=attr.get("action", "")))
            self._in_form = True
        elif tag == "input" and self._in_form:
            self.forms[-1].inputs.append(attr)
        elif tag == "h1":
            self._in_h1 = True
        if "id" in attr:
            self._capture = attr["id"]
            self.ids.setdefault(self._capture, "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        if tag == "h1":
            self._in_h1 = False
        self._capture = None

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.title += data
        if self._capture is not None:
            self.ids[self._capture] += data


@dataclass
class Page:
    status: int
    html: str
    title: str
    forms: list[Form]
    ids: dict[str, str]

    def form(self, step: str) -> Form:
        for form in self.forms:
            if form.step == step:
                return form
        raise AssertionError(f"no '{step}' form on the page titled {self.title!r}:\n{self.html[:2000]}")


def parse(response: httpx.Response) -> Page:
    parser = _PageParser()
    parser.feed(response.text)
    return Page(response.status_code, response.text, parser.title.strip(), parser.forms, parser.ids)


def submit(client: httpx.Client, page: Page, step: str, fills: dict[str, str], extra: dict[str, str] | None = None) -> Page:
    """Submits the form for `step`, filling inputs by autocomplete token."""
    form = page.form(step)
    data: dict[str, str] = {}
    for field_ in form.inputs:
        name = field_.get("name")
        if not name or field_.get("type") == "checkbox":
            continue
        # `autocomplete` may hold several tokens (`username webauthn`).
        tokens = field_.get("autocomplete", "").split()
        filled = [fills[token] for token in tokens if token in fills]
        data[name] = filled[0] if filled else field_.get("value", "")
    data.update(extra or {})
    return parse(client.post(form.action, data=data))
