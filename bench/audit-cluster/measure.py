"""Audit queries fully cold: every page of the database evicted before each query. See README.md.

Usage: python3 measure.py [DB] [SAMPLES]   (DB defaults to /tmp/audit.db; keyward-bench's audit workload seeds /var/tmp/keyward-bench/audit-RECORDS/keyward.db)
MMAP=BYTES in the environment sets SQLite's mmap_size (default 0, as Keyward runs).
"""
import os
import random
import sqlite3
import sys
import time

DB = sys.argv[1] if len(sys.argv) > 1 else "/tmp/audit.db"
SAMPLES = int(sys.argv[2]) if len(sys.argv) > 2 else 300
TENANT = "0be9c1a2-0000-4000-8000-00000000b001"
USERS, ADMINS = 100_000, 50  # audit-bench's targets and initiators

# The statements Keyward runs (audit_page_sql), without the group_concat that packs a page.
QUERIES = {
    "one record by id (baseline)": (
        "SELECT record FROM audit_records WHERE tenant_id = ? AND id = ?", 1),
    "a target's last 50, from the copies (schema 8)": (
        "SELECT t.audit_seq, t.activity_date_time, c.record FROM audit_targets t CROSS JOIN audit_copies c "
        "WHERE t.tenant_id = ? AND t.target_id = ? AND c.key = t.copy_key "
        "ORDER BY t.activity_date_time DESC, t.audit_seq DESC LIMIT 50", 50),
    "a target's last 50, from the records (schema 7)": (
        "SELECT t.audit_seq, t.activity_date_time, r.record FROM audit_targets t CROSS JOIN audit_records r "
        "WHERE t.tenant_id = ?1 AND t.target_id = ? AND r.seq = t.audit_seq AND r.tenant_id = ?1 "
        "ORDER BY t.activity_date_time DESC, t.audit_seq DESC LIMIT 50", 50),
    "an initiator's day, from the copies (schema 9)": (
        "SELECT t.audit_seq, t.activity_date_time, c.record FROM audit_initiators t CROSS JOIN audit_copies c "
        "WHERE t.tenant_id = ? AND t.initiator_id = ? AND t.activity_date_time >= ? AND t.activity_date_time <= ? "
        "AND c.key = t.copy_key ORDER BY t.activity_date_time DESC, t.audit_seq DESC LIMIT 100", 100),
    "an initiator's day, from the records (schema 8)": (
        "SELECT t.audit_seq, t.activity_date_time, r.record FROM audit_initiators t CROSS JOIN audit_records r "
        "WHERE t.tenant_id = ?1 AND t.initiator_id = ? AND t.activity_date_time >= ? AND t.activity_date_time <= ? "
        "AND r.seq = t.audit_seq AND r.tenant_id = ?1 "
        "ORDER BY t.activity_date_time DESC, t.audit_seq DESC LIMIT 100", 100),
}


def evict(path):
    for name in (path, path + "-wal"):
        if os.path.exists(name):
            fd = os.open(name, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def args_for(name, rng, days):
    if name.startswith("one record"):
        total = days["records"]
        return (TENANT, f"Directory_bench_{rng.randrange(total):012}")
    if name.startswith("a target"):
        return (TENANT, f"000000a5-0000-4000-8000-{rng.randrange(USERS):012x}")
    day = rng.choice(days["days"])
    return (TENANT, f"000000ad-0000-4000-8000-{rng.randrange(ADMINS):012x}",
            f"{day}T00:00:00.000000Z", f"{day}T23:59:59.999999Z")


def main():
    con = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
    days = {
        "records": con.execute("SELECT max(seq) FROM audit_records").fetchone()[0],
        "days": [row[0] for row in con.execute(
            "SELECT DISTINCT substr(activity_date_time, 1, 10) FROM audit_records WHERE seq % 10000 = 0")],
    }
    con.close()
    rng = random.Random(int(time.time()))
    results = {name: [] for name in QUERIES}
    for i in range(SAMPLES):
        names = list(QUERIES)
        rng.shuffle(names)
        for name in names:
            sql, _ = QUERIES[name]
            params = args_for(name, rng, days)
            evict(DB)
            con = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
            con.execute("PRAGMA cache_size=-65536")
            con.execute(f"PRAGMA mmap_size={os.environ.get('MMAP', 0)}")
            started = time.perf_counter()
            rows = con.execute(sql, params).fetchall()
            results[name].append((time.perf_counter() - started, len(rows)))
            con.close()
        if sys.stderr.isatty() and i % 10 == 9:
            print(f"\r{i + 1}/{SAMPLES} samples", end="", file=sys.stderr)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"{DB}: {SAMPLES} samples per query, every page evicted before each query")
    for name, xs in results.items():
        ts = sorted(t for t, _ in xs)
        n = len(ts)
        print(f"{name:48} rows/q {sum(r for _, r in xs) / n:5.1f}  p50 {ts[n // 2] * 1e3:6.2f} ms"
              f"  p90 {ts[n * 9 // 10] * 1e3:6.2f} ms  p99 {ts[n * 99 // 100] * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
