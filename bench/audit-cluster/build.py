"""Builds /tmp/audit-cov.db: a covering, target-clustered copy of the records of 10,000 of the
audit-bench users, filled in record order. See README.md."""
import os, sqlite3, time
main = "/tmp/audit.db"
if os.path.exists("/tmp/audit-cov.db"):
    os.remove("/tmp/audit-cov.db")
con = sqlite3.connect(main)
con.execute("ATTACH '/tmp/audit-cov.db' AS x")
con.execute("PRAGMA x.journal_mode=OFF")
con.execute("PRAGMA x.synchronous=OFF")
con.execute("CREATE TABLE IF NOT EXISTS x.cov (target_id TEXT NOT NULL, activity_date_time TEXT NOT NULL, audit_seq INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (target_id, activity_date_time, audit_seq)) WITHOUT ROWID")
# 10,000 of the 100,000 bench users: 000000a5-0000-4000-8000-{n:012x}, n % 10 == 0
ids = [f"000000a5-0000-4000-8000-{n:012x}" for n in range(0, 100000, 10)]
con.execute("CREATE TEMP TABLE pick (seq INTEGER PRIMARY KEY, target_id TEXT, t TEXT)")
t0 = time.time()
con.executemany("INSERT OR IGNORE INTO pick SELECT audit_seq, target_id, activity_date_time FROM audit_targets WHERE target_id = ?", [(i,) for i in ids])
print("picked", con.execute("select count(*) from pick").fetchone(), time.time() - t0, flush=True)
t0 = time.time()
# seq order = the order records were written, so the covering table grows as it would in service
con.execute("INSERT INTO x.cov SELECT p.target_id, p.t, p.seq, r.record FROM pick p JOIN audit_records r ON r.seq = p.seq ORDER BY p.seq")
con.commit()
print("built", time.time() - t0, flush=True)
