"""One target's newest 51 records, fully cold, today's way against the covering copy. See README.md."""
import sqlite3, time, os, random
MAIN, COV = "/tmp/audit.db", "/tmp/audit-cov.db"
TENANT = "0be9c1a2-0000-4000-8000-00000000b001"
def evict(path):
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
JOIN = ("SELECT r.seq, r.activity_date_time, r.record FROM audit_targets t CROSS JOIN audit_records r "
        "WHERE t.target_id = ? AND r.seq = t.audit_seq AND r.tenant_id = ? "
        "ORDER BY t.activity_date_time DESC, t.audit_seq DESC LIMIT 51")
COVQ = ("SELECT audit_seq, activity_date_time, record FROM cov WHERE target_id = ? "
        "ORDER BY activity_date_time DESC, audit_seq DESC LIMIT 51")
rng = random.Random(int(time.time()))
picked = rng.sample(range(0, 100000, 10), 400)
res = {"join": [], "covering": []}
for i, n in enumerate(picked):
    target = f"000000a5-0000-4000-8000-{n:012x}"
    for kind in (["join", "covering"] if i % 2 else ["covering", "join"]):
        evict(MAIN); evict(MAIN + "-wal") if os.path.exists(MAIN + "-wal") else None; evict(COV)
        con = sqlite3.connect(MAIN if kind == "join" else COV)
        con.execute("PRAGMA cache_size=-65536")
        t0 = time.perf_counter()
        rows = con.execute(JOIN, (target, TENANT)).fetchall() if kind == "join" else con.execute(COVQ, (target,)).fetchall()
        res[kind].append((time.perf_counter() - t0, len(rows)))
        con.close()
for kind, xs in res.items():
    ts = sorted(t for t, _ in xs)
    n = len(ts)
    print(f"{kind:9} n={n} rows/q={sum(r for _, r in xs)/n:.1f} p50={ts[n//2]*1e3:.2f}ms p90={ts[n*9//10]*1e3:.2f}ms p99={ts[n*99//100]*1e3:.2f}ms")
