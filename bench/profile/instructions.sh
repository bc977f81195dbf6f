#!/usr/bin/env bash
# User-space instructions one `GET /v1.0/users/{id}` costs a `keyward serve` on SQLite, counted
# by valgrind's callgrind: unlike a rate, the count does not move with the machine's load, so two
# builds compare to within about 1% on a shared machine where their rates move by a third.
#
#   bench/profile/instructions.sh path/to/keyward [REQUESTS]     (default 3000; needs valgrind)
#
# Starts the binary under callgrind with --demo in a fresh data directory, reads one demo user
# 300 times to warm up, zeroes the counters, reads it REQUESTS times more on one connection,
# and prints the instructions a request; the dump (callgrind.out.*, in the data directory it
# prints) gives them by function: `callgrind_annotate --inclusive=yes FILE`. System calls, the
# kernel's share, are not counted (`perf stat -e 'syscalls:sys_enter_*'` counts those). The count
# is the whole process's: background work that falls inside the window (SQLite parsing the schema
# again on another connection, a maintenance task) adds a few percent to some runs; the requests'
# own task is `keyward_http::serve::serve::{{closure}}::{{closure}}` in the inclusive listing.
#
# KEYWARD_PROFILE_COMMITS=1: another connection commits to the database (a row in a table of its
# own) before each counted read, so nothing the server kept from the read before holds: the
# worst case for its kept reads (`kept_users`). That connection's work is not counted.
#
# KEYWARD_PROFILE_GRANTS=1: counts client-credentials grants instead (`POST /{tenant}/oauth2/
# v2.0/token` with a client secret, for an application the demo's administrator registers
# through Graph first), one at a time on one connection: each grant's sign-in log entry is a
# batch and a commit of its own, where under load a commit carries many.
set -euo pipefail
binary=$(realpath "${1:?usage: $0 path/to/keyward [REQUESTS]}")
requests=${2:-3000}
command -v valgrind >/dev/null || { echo "error: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
port=${KEYWARD_PROFILE_PORT:-18299}
dir=$(mktemp -d /tmp/keyward-instructions.XXXXXX)
(cd "$dir" && exec valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
  "$binary" serve --demo --listen "127.0.0.1:$port" --data-dir "$dir" --rate-limit-per-address 0 \
  > "$dir/server.log" 2>&1) &
server=$!
# The server writes its last dump as it stops: wait for it.
trap 'kill -INT $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  kill -0 "$server" 2>/dev/null || { echo "error: the server stopped (port $port taken? set KEYWARD_PROFILE_PORT); see $dir/server.log" >&2; exit 1; }
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.5
done
token=$("$binary" token --upn admin@keyward.test --data-dir "$dir" --listen "127.0.0.1:$port" | tail -1)
python3 - "$port" "$token" "$requests" "$server" "$dir" "${KEYWARD_PROFILE_COMMITS:-0}" "${KEYWARD_PROFILE_GRANTS:-0}" <<'EOF'
import http.client, json, sqlite3, subprocess, sys, glob, os, time, urllib.parse
port, token, requests, server, folder = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
commits, grants = sys.argv[6] == "1", sys.argv[7] == "1"
conn = http.client.HTTPConnection("127.0.0.1", port)
headers = {"Authorization": "Bearer " + token}

def call(method, path, body=None, extra=None):
    conn.request(method, path, body=body, headers=extra if extra is not None else headers)
    response = conn.getresponse()
    answer = response.read()
    if response.status >= 300:
        sys.exit(f"{method} {path}: {response.status} {answer[:300]!r}")
    return answer

if grants:
    graph = dict(headers, **{"Content-Type": "application/json"})
    app = json.loads(call("POST", "/v1.0/applications", json.dumps({"displayName": "Profile daemon"}), graph))
    secret = json.loads(call("POST", f"/v1.0/applications/{app['id']}/addPassword", "{}", graph))["secretText"]
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": app["appId"],
                                   "client_secret": secret, "scope": "https://graph.microsoft.com/.default"})
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    def once():
        call("POST", "/keyward.test/oauth2/v2.0/token", form, form_headers)
    what = "grant"
else:
    users = json.loads(call("GET", "/v1.0/users?$top=5"))["value"]
    path = "/v1.0/users/" + next(u["id"] for u in users if not u["userPrincipalName"].startswith("admin@"))
    def once():
        call("GET", path)
    what = "request"
other = None
if commits:
    other = sqlite3.connect(os.path.join(folder, "keyward.db"), isolation_level=None, timeout=10)
    other.execute("CREATE TABLE IF NOT EXISTS profile_commits (n INTEGER)")

def commit():
    if other is not None:
        other.execute("INSERT INTO profile_commits VALUES (1)")

for _ in range(300):
    commit()
    once()
subprocess.run(["callgrind_control", "--zero", server], check=True, capture_output=True)
for _ in range(requests):
    commit()
    once()
subprocess.run(["callgrind_control", "--dump", server], check=True, capture_output=True)
for _ in range(100):
    dumps = sorted(glob.glob(os.path.join(folder, "callgrind.out.*")))
    if dumps:
        break
    time.sleep(0.1)
time.sleep(0.5)
totals = [line for line in open(dumps[-1]) if line.startswith(("summary:", "totals:"))]
print(f"{int(totals[0].split()[1]) / requests:,.0f} user-space instructions a {what} ({requests} of them; {dumps[-1]})")
EOF
