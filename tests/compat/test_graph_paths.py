"""Every Graph route in Keyward's /openapi.json is one Graph has: the same path (as msgraph-sdk's
request builders for v1.0, and msgraph-beta-sdk's for beta, address it), the same verb, and the
same kind of answer: `GET` answers `200`, `DELETE` `204`, and an action (`POST`) `204 No Content`
exactly where the SDK's method returns nothing. (For `PATCH` the SDKs' signatures follow Graph's
metadata, not its answers, so they tell nothing.) Keyward's own routes are named in EXTENSIONS
and documented in docs/graph-differences.md."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from keyward_harness import KeywardServer

# Keyward's routes that Graph does not have (docs/graph-differences.md, "Extensions"), by
# version ("*" for both), verb and normalised path.
EXTENSIONS = {
    ("*", "post", "/users/{}/authentication/requiremfareregistration"),
    ("*", "post", "/users/{}/authentication/revokemfasessions"),
    ("*", "post", "/users/{}/authentication/resetmfa"),
    ("*", "get", "/policies/keywardsigninpolicy"),
    ("*", "patch", "/policies/keywardsigninpolicy"),
    ("*", "get", "/policies/keywardservicedeskpolicy"),
    ("*", "patch", "/policies/keywardservicedeskpolicy"),
    # The notification outbox (docs/guide/notifications.md).
    ("beta", "get", "/keyward/notifications"),
    ("beta", "get", "/keyward/notifications/{}"),
    # Changes held by dual control (docs/guide/dual-control.md).
    ("beta", "get", "/keyward/servicedeskrequests"),
    ("beta", "get", "/keyward/servicedeskrequests/{}"),
    ("beta", "post", "/keyward/servicedeskrequests/{}/approve"),
    ("beta", "post", "/keyward/servicedeskrequests/{}/deny"),
    # Bulk operations run by the server (docs/guide/bulk-operations.md).
    ("beta", "post", "/keyward/bulkoperations"),
    ("beta", "get", "/keyward/bulkoperations/{}"),
    ("beta", "get", "/keyward/bulkoperations/{}/results"),
    # Caller verification (docs/guide/caller-verification.md).
    ("beta", "post", "/keyward/callerverifications"),
    ("beta", "get", "/keyward/callerverifications/{}"),
    ("beta", "post", "/keyward/callerverifications/{}/attest"),
    # resetPassword also under passwordMethods, where the password method lives.
    ("*", "post", "/users/{}/authentication/passwordmethods/{}/resetpassword"),
    # Beta's transitive role assignments, also under v1.0.
    ("v1.0", "get", "/rolemanagement/directory/transitiveroleassignments"),
    # Beta keeps v1.0's singleton authorization policy (beta's is a collection).
    ("beta", "patch", "/policies/authorizationpolicy"),
    # Registering a passkey through Graph (documented in 2026) postdates the installed SDKs;
    # beta's creationOptions is a function with an argument, Keyward answers the v1.0 form there.
    ("*", "post", "/users/{}/authentication/fido2methods"),
    ("beta", "get", "/users/{}/authentication/fido2methods/creationoptions"),
    # v1.0's SMS sign-in switches, also under beta (whose SDK has none).
    ("beta", "post", "/users/{}/authentication/phonemethods/{}/enablesmssignin"),
    ("beta", "post", "/users/{}/authentication/phonemethods/{}/disablesmssignin"),
}

# Graph's actions Keyward routes but always refuses, with the reason (docs/graph-differences.md):
# their answer is documented as the refusal, not Graph's success.
REFUSED = {
    # Keyward sends no text messages.
    ("*", "post", "/users/{}/authentication/phonemethods/{}/enablesmssignin"),
}

_TEMPLATE = re.compile(r'super\(\).__init__\(request_adapter, "\{\+baseurl\}([^"?]*?)(?:\{\?[^"]*)?"')
_VERB = re.compile(r"    async def (get|post|patch|put|delete)\(.*\) -> ([^:]+):")


def _normal(path: str) -> str:
    """A path with every parameter as `{}`, function arguments in name order, without a trailing
    `()`, `/me` as the user it is, a type cast as the SDKs write it (`graph.user`), in lower case."""
    path = re.sub(r"\{[^}]*\}", "{}", path).removesuffix("()").lower().replace("/microsoft.graph.", "/graph.")
    path = re.sub(r"\(([^)]*)\)", lambda m: "(" + ",".join(sorted(m.group(1).split(","))) + ")", path)
    return "/users/{}" + path[3:] if path == "/me" or path.startswith("/me/") else path


def _find(index: dict[str, dict[str, bool]], verb: str, path: str) -> bool | None:
    """Whether the SDK's method for `verb` on `path` returns a body (`None`: the SDK has no such
    method). An SDK parameter matches a fixed segment of Keyward's (a literal route where Graph
    has a key)."""
    if verb in index.get(path, {}):
        return index[path][verb]
    segments = path.split("/")
    for candidate, verbs in index.items():
        if (
            verb in verbs
            and len(candidate.split("/")) == len(segments)
            and all(theirs in ("{}", ours) for theirs, ours in zip(candidate.split("/"), segments))
        ):
            return verbs[verb]
    return None


def _index(package: str) -> dict[str, dict[str, bool]]:
    """The paths the SDK's request builders address, their verbs, and whether each returns a body."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is installed"
    root = Path(next(iter(spec.submodule_search_locations))) / "generated"
    index: dict[str, dict[str, bool]] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if not name.endswith("_request_builder.py"):
                continue
            text = (Path(directory) / name).read_text()
            found = _TEMPLATE.search(text)
            if found:
                verbs = index.setdefault(_normal(found.group(1)), {})
                for verb, returns in _VERB.findall(text):
                    verbs[verb] = returns.strip() != "None"
    return index


def test_every_graph_route_is_one_graph_has(keyward: KeywardServer) -> None:
    with keyward.raw_http() as http:
        document = http.get(f"{keyward.public_url}/openapi.json").json()
    indexes = {"v1.0": _index("msgraph"), "beta": _index("msgraph_beta")}
    checked = 0
    unknown = []
    answers = []
    for path, item in document["paths"].items():
        version, _, rest = path.lstrip("/").partition("/")
        if version not in indexes or rest == "$batch":
            continue
        for verb, operation in item.items():
            key = _normal("/" + rest)
            checked += 1
            if ("*", verb, key) in EXTENSIONS or (version, verb, key) in EXTENSIONS:
                continue
            returns_body = _find(indexes[version], verb, key)
            if returns_body is None:
                unknown.append(f"{verb.upper()} /{version}/{rest}")
            else:
                statuses = set(operation["responses"])
                expected = {
                    "get": "200",
                    "delete": "204",
                    "post": "a body" if returns_body else "204",
                }.get(verb)
                is_refused = ("*", verb, key) in REFUSED
                wrong = not is_refused and (
                    (verb == "post" and ("204" in statuses) == returns_body)
                    or (verb in ("get", "delete") and expected not in statuses)
                )
                if wrong:
                    answers.append(
                        f"{verb.upper()} /{version}/{rest} answers {', '.join(sorted(statuses))}; Graph answers {expected}"
                    )
    assert checked > 100, f"only {checked} operations documented"
    assert not unknown, "routes Graph does not have:\n" + "\n".join(sorted(unknown))
    assert not answers, "actions answering unlike Graph:\n" + "\n".join(sorted(answers))
