#!/usr/bin/env python3
"""Where one operation's processor time goes, step by step, from a `perf` profile.

docs/performance.md's "The budget per step" was made with it. Record the process with call
graphs, then hand this the text `perf script` prints and the operations per second the
benchmark reported for the run:

    perf record -F 999 --call-graph dwarf,16384 -p <keyward serve's pid> -o api.data -- sleep 5
    perf script -i api.data > api.txt
    python3 bench/profile/budget.py api-read api.txt 12545

Paths: `api-read` and `client-credentials` (a `keyward serve` process, recorded while `wrk`
loads it), `sign-in` and `write` (the `keyward-bench` process itself, recorded whole: the
measured window is found from the samples). Each sample counts once, for the first step whose
frames it holds, in the order listed; microseconds are the share of the samples times the
processor time one operation takes (the busy cores over the rate).
"""

import collections
import re
import sys

STEPS = {
    "api-read": [
        ("the caller's read (user and roles, one statement)", ["get_user_and_roles"]),
        ("the requested user's read (one statement)", ["::find_user"]),
        ("the log line and metrics", ["tracing_subscriber", "log_writer", "Metrics::record", "tracing_core", "tracing::"]),
        ("the JSON", ["users_json", "graph_json", "serde_json", "shape::user"]),
        ("the token (verified-signature cache, claims)", ["VerifiedTokens", "verified_token", "refresh_keys", "authenticate", "KeyRing"]),
        ("the authorization decision", ["authorize", "require_scope"]),
        ("sending the answer (writev, loopback, waking the client)", ["tcp_sendmsg", "writev", "sock_write_iter", "write_head", "Http1Transaction>::encode", "poll_flush"]),
        ("receiving and parsing the request", ["poll_read_head", "Buffered::parse", "tcp_recvmsg", "__libc_recv", "poll_read"]),
        ("routing, middleware, the HTTP stack", ["axum::", "keyward_http", "tower::", "hyper::", "hyper_util"]),
    ],
    "client-credentials": [
        ("ES256 signing (the access token)", ["KeyRing::sign"]),
        ("the sign-in log's commit (fsync included)", ["LiteTx as keyward_store::Tx>::commit"]),
        ("the sign-in log's INSERT and version check", ["sign_in_log::insert", "sign_in_log::start", "write::{{closure}}"]),
        ("the log line and metrics", ["tracing_subscriber", "log_writer", "Metrics::record", "tracing_core", "tracing::"]),
        ("parsing the form", ["Form<T>", "RawForm", "form_urlencoded", "serde_path_to_error"]),
        ("the JSON answer and the claims", ["serde_json", "Serialize", "base64"]),
        ("the client and its secret (kept client)", ["kept_client", "check_client_secret", "client_of", "ClientCache"]),
        ("sending the answer (writev, loopback, waking the client)", ["tcp_sendmsg", "writev", "sock_write_iter", "write_head", "Http1Transaction>::encode", "poll_flush"]),
        ("receiving and parsing the request", ["poll_read_head", "Buffered::parse", "tcp_recvmsg", "__libc_recv", "poll_read"]),
        ("the token endpoint's other work", ["keyward_app::oidc"]),
        ("routing, middleware, the HTTP stack", ["axum::", "keyward_http", "tower::", "hyper::", "hyper_util"]),
    ],
    "sign-in": [
        ("Argon2id", ["argon2::", "blake2"]),
        ("SQLite commits (fsync included)", ["::commit::", "sqlite3VdbeHalt", "fsync"]),
        ("SQLite statements", ["sqlite3", "rusqlite"]),
        ("the benchmark's client", ["keyward_testkit", "reqwest", "keyward_bench::oidc::sign_in", "redeem_code", "hyper::client", "hyper_util::client"]),
        ("ES256 signing, TOTP, hashes", ["KeyRing::sign", "ecdsa", "totp", "sha2", "hmac"]),
        ("the pages (HTML)", ["keyward_http::pages", "render"]),
        ("the HTTP server (hyper, axum, middleware, log lines)", ["hyper::", "axum::", "tower::", "tracing", "keyward_http"]),
        ("the sign-in's own logic", ["keyward_app", "keyward_core", "keyward_store"]),
        ("wake-ups and scheduling", ["schedule", "futex", "epoll", "try_to_wake_up", "irq"]),
    ],
    "write": [
        ("the commit: log frames and fsync", ["Tx>::commit::"]),
        ("the audit record, its target and initiator rows, copies, chain head", ["AuditStore>::insert_audit"]),
        ("the notification (tenant name, outbox row)", ["notifications::"]),
        ("the decision's reads (target, roles, eligibilities, units, groups, policies)",
         ["user_facts", "get_user", "list_unended_role", "is_in_role_assignable", "list_units_of", "desk", "Polic", "eligib"]),
        ("deleting the methods", ["delete_phone_methods", "delete_software_oath"]),
        ("taking the write turn, BEGIN", ["App::write::", "Store>::write::"]),
        ("the decision and the record (core, app)", ["keyward_core", "keyward_app"]),
    ],
}

# The frames that mark an operation in progress, for the paths recorded whole.
WINDOW = {"sign-in": ["keyward_testkit::browser", "sign_in_submit"], "write": ["require_mfa_reregistration"]}


def samples(path):
    """(timestamp, frames innermost first) for each sample of `perf script`'s text."""
    frames, stamp = [], 0.0
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield stamp, frames
            frames = []
        elif line[0] in "\t ":
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                frames.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[1].rsplit(" (", 1)[0]))
        else:
            frames = []
            found = re.search(r" (\d+\.\d+):", line)
            stamp = float(found.group(1)) if found else 0.0
    if frames:
        yield stamp, frames


def windows(found, markers, gap=0.3):
    """The spans in which samples hold one of `markers`, split where none did for `gap` seconds."""
    stamps = sorted(t for t, frames in found if any(m in f for f in frames for m in markers))
    spans = [[stamps[0], stamps[0]]]
    for t in stamps[1:]:
        if t - spans[-1][1] > gap:
            spans.append([t, t])
        else:
            spans[-1][1] = t
    return spans


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in STEPS:
        sys.exit(f"usage: budget.py {{{','.join(STEPS)}}} PERF_SCRIPT.txt OPERATIONS_PER_SECOND [FREQUENCY=999]")
    path, rate = sys.argv[1], float(sys.argv[3])
    frequency = float(sys.argv[4]) if len(sys.argv) > 4 else 999.0
    found = list(samples(sys.argv[2]))
    if path in WINDOW:
        spans = windows(found, WINDOW[path])
        found = [(t, f) for t, f in found if any(a <= t <= b for a, b in spans)]
        seconds = sum(b - a for a, b in spans)
    else:
        seconds = found[-1][0] - found[0][0]
    busy = len(found) / seconds / frequency
    per_op = busy / rate * 1e6
    counts = collections.Counter()
    for _, frames in found:
        for name, keys in STEPS[path]:
            if any(k in f for f in frames for k in keys):
                counts[name] += 1
                break
        else:
            counts["everything else"] += 1
    print(f"{len(found)} samples over {seconds:.2f} s: {busy:.2f} cores busy, "
          f"{per_op:.1f} µs of processor time an operation ({1e6 / rate:.1f} µs apart)")
    for name in [name for name, _ in STEPS[path]] + ["everything else"]:
        share = counts[name] / len(found)
        print(f"{share * 100:5.1f}%  {share * per_op:8.1f} µs  {name}")


if __name__ == "__main__":
    main()
