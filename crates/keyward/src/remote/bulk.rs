//! One operation on many users: from the command line or a CSV file, with a dry run, a progress
//! bar, a per-row result and a summary, and a way to go on after an interruption.
//!
//! Each row is first *planned* with reads only (does the user exist, is it already in the target
//! state), then, unless `--dry-run`, *applied*. A row already in the target state is reported and
//! not repeated, so running a file again after a crash does no user twice; `--continue-from ROW`
//! skips the rows before ROW outright. Whether the server allows the change is decided only when
//! it is made: a dry run reports refusals it can see from the reads (a user the caller may not
//! read, a missing role), not the decision on the write itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use super::client::{Graph, encode, literal};
use super::output::{self, Format, OutputArgs, Rows, Tone};
use super::{Failure, exit};

/// `--from-csv`, `--dry-run`, `--continue-from` and the output format, on every bulk command.
#[derive(Debug, Clone, Args)]
pub struct BulkArgs {
    /// Read the users from a CSV file with a header row: a `userPrincipalName` or `id` column
    /// (and `role`, `scope`, `state` columns where the command uses them; other columns are
    /// ignored).
    #[arg(long, value_name = "FILE")]
    pub from_csv: Option<PathBuf>,
    /// Show what would change, what is already done and what cannot be done, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Go on after an interruption: skip the CSV's data rows before ROW (the first data row is 1).
    #[arg(long, value_name = "ROW", value_parser = clap::value_parser!(u64).range(1..))]
    pub continue_from: Option<u64>,
    /// Confirm a real run on many users without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One input row.
#[derive(Debug, Clone)]
pub struct Row {
    /// The data row's number in the file (1 for the first after the header; blank lines are not
    /// rows), or the argument's.
    pub number: u64,
    pub user: String,
    pub role: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
}

/// What a bulk command does to each user.
#[derive(Debug, Clone)]
pub enum Operation {
    RequireReregistration,
    RevokeMfaSessions,
    RevokeSessions,
    CreatePass { lifetime_minutes: Option<u32>, is_usable_once: bool },
    SetPerUserMfa,
    ResetMfa { pass: Option<(Option<u32>, bool)> },
    AssignRole,
    UnassignRole,
}

impl Operation {
    fn needs_role(&self) -> bool {
        matches!(self, Operation::AssignRole | Operation::UnassignRole)
    }

    fn verb(&self) -> &'static str {
        match self {
            Operation::RequireReregistration => "require re-registration",
            Operation::RevokeMfaSessions => "revoke MFA sessions",
            Operation::RevokeSessions => "revoke sign-in sessions",
            Operation::CreatePass { .. } => "create a Temporary Access Pass",
            Operation::SetPerUserMfa => "set per-user MFA",
            Operation::ResetMfa { .. } => "reset MFA",
            Operation::AssignRole => "assign the role",
            Operation::UnassignRole => "remove the role",
        }
    }
}

/// Reads the rows of a CSV file: a header row naming `userPrincipalName` or `id` (any case).
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<Row>> {
    let file =
        std::fs::File::open(path).map_err(|err| Failure::usage(format!("cannot open {} ({err})", path.display())))?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(file);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|err| Failure::usage(format!("{} has no readable header row ({err})", path.display())))?
        .iter()
        .map(|it| it.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let column = |names: &[&str]| headers.iter().position(|it| names.contains(&it.as_str()));
    let user = column(&["userprincipalname", "upn"]).or_else(|| column(&["id", "userid"])).ok_or_else(|| {
        Failure::usage(format!(
            "{} has no userPrincipalName or id column (its header row names: {}); add one",
            path.display(),
            headers.join(", ")
        ))
    })?;
    let (role, scope, state) =
        (column(&["role", "roledefinitionid"]), column(&["scope", "directoryscopeid"]), column(&["state"]));
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let number = u64::try_from(index).unwrap_or(u64::MAX) + 1;
        let record = record
            .map_err(|err| Failure::usage(format!("{}: data row {number} is not valid CSV ({err})", path.display())))?;
        let get = |at: Option<usize>| at.and_then(|at| record.get(at)).map(str::to_owned).filter(|it| !it.is_empty());
        if record.iter().all(str::is_empty) {
            continue;
        }
        rows.push(Row {
            number,
            user: get(Some(user)).unwrap_or_default(),
            role: get(role),
            scope: get(scope),
            state: get(state),
        });
    }
    Ok(rows)
}

/// The rows from positional users, or from `--from-csv` (not both).
pub fn rows(users: &[String], args: &BulkArgs) -> anyhow::Result<Vec<Row>> {
    match (&args.from_csv, users.is_empty()) {
        (Some(_), false) => Err(Failure::usage("give users on the command line or --from-csv FILE, not both").into()),
        (None, true) => {
            Err(Failure::usage("give at least one user (a sign-in name or an id), or --from-csv FILE").into())
        }
        (Some(path), true) => read_csv(path),
        (None, false) => Ok(users
            .iter()
            .zip(1..)
            .map(|(user, number)| Row { number, user: user.clone(), role: None, scope: None, state: None })
            .collect()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Changed,
    /// Dual control holds the change for a second administrator (`202` with a request).
    Held,
    WouldChange,
    Already,
    Skipped,
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Changed => "done",
            Outcome::Held => "held for approval",
            Outcome::WouldChange => "would change",
            Outcome::Already => "already",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }

    fn tone(self) -> Tone {
        match self {
            Outcome::Changed | Outcome::WouldChange => Tone::Good,
            Outcome::Already | Outcome::Skipped | Outcome::Held => Tone::Warn,
            Outcome::Failed => Tone::Bad,
        }
    }
}

#[derive(Debug)]
struct RowResult {
    row: u64,
    user: String,
    outcome: Outcome,
    detail: String,
    failure_code: u8,
    extra: Value,
}

impl RowResult {
    fn new(row: &Row, outcome: Outcome, detail: impl Into<String>) -> RowResult {
        RowResult {
            row: row.number,
            user: row.user.clone(),
            outcome,
            detail: detail.into(),
            failure_code: exit::FAILURE,
            extra: Value::Null,
        }
    }
}

/// What makes two rows the same change: user, role, scope, state.
type RowKey = (String, String, String, String);

/// What planning found for a row.
enum Plan {
    Change { detail: String, target: Target },
    Already(String),
}

/// Everything a row's change needs, found while planning.
struct Target {
    user_id: String,
    role_id: Option<String>,
    scope: String,
    assignment_id: Option<String>,
    state: Option<String>,
}

/// Reads shared by every row: roles and units by name, users by key.
#[derive(Default)]
struct Lookups {
    roles: Option<Vec<Value>>,
    units: HashMap<String, String>,
}

/// Runs `operation` on `rows`; prints the table and the summary; fails with the right exit code.
pub async fn run(
    graph: &Graph,
    operation: Operation,
    rows: Vec<Row>,
    defaults: &Row,
    args: &BulkArgs,
    is_single: bool,
) -> anyhow::Result<()> {
    let format = args.output.format();
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|row| Row {
            role: row.role.or_else(|| defaults.role.clone()),
            scope: row.scope.or_else(|| defaults.scope.clone()),
            state: row.state.or_else(|| defaults.state.clone()),
            ..row
        })
        .collect();
    // The journal names the whole input, so a run started at another row shares it.
    let mut journal = if args.dry_run || is_single { None } else { Some(Journal::open(graph, &operation, &rows)?) };
    let skip_before = args.continue_from.unwrap_or(1);
    let rows: Vec<Row> = rows.into_iter().filter(|it| it.number >= skip_before).collect();
    if !args.dry_run && rows.len() > 1 && !args.yes {
        super::confirm(
            &format!("{} for {} users on {}?", operation.verb(), rows.len(), graph.session().server.url),
            "Add --yes to confirm (or --dry-run to see what would change)",
        )?;
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn(watch_signals(interrupted.clone(), in_flight.clone()));
    let bar = output::progress(u64::try_from(rows.len()).unwrap_or(u64::MAX));
    let mut lookups = Lookups::default();
    let mut seen: HashMap<RowKey, u64> = HashMap::new();
    let mut results = Vec::new();
    let mut stopped_at = None;
    for row in &rows {
        if interrupted.load(Ordering::SeqCst) {
            stopped_at = Some(row.number);
            break;
        }
        in_flight.store(row.number, Ordering::SeqCst);
        bar.set_message(row.user.clone());
        let result = match journal.as_ref().filter(|it| it.done.contains(&row.number)) {
            Some(_) => RowResult::new(row, Outcome::Already, "done by an earlier run of this command"),
            None => one_row(graph, &operation, row, args.dry_run, &mut lookups, &mut seen).await,
        };
        bar.inc(1);
        if matches!(result.outcome, Outcome::Changed | Outcome::Held)
            && let Some(journal) = journal.as_mut()
        {
            journal.record(row.number)?;
        }
        let is_fatal =
            result.outcome == Outcome::Failed && matches!(result.failure_code, exit::SESSION | exit::UNREACHABLE);
        results.push(result);
        if is_fatal && !is_single {
            // That row was not done: going on starts with it.
            stopped_at = Some(row.number);
            break;
        }
    }
    bar.finish_and_clear();
    watcher.abort();
    let is_complete = stopped_at.is_none() && results.iter().all(|it| it.outcome != Outcome::Failed);
    if let Some(journal) = journal {
        journal.finish(is_complete);
    }

    if is_single
        && let [only] = &results[..]
        && only.outcome == Outcome::Failed
    {
        return Err(Failure::new(only.failure_code, format!("{}: {}", only.user, only.detail)).into());
    }
    let count = |outcome: Outcome| results.iter().filter(|it| it.outcome == outcome).count();
    let summary = format!(
        "{}: {} {}{}, {} already, {} skipped, {} failed, of {} rows{}.",
        operation.verb(),
        if args.dry_run { count(Outcome::WouldChange) } else { count(Outcome::Changed) },
        if args.dry_run { "would change" } else { "done" },
        match count(Outcome::Held) {
            0 => String::new(),
            held => format!(", {held} held for a second administrator's approval"),
        },
        count(Outcome::Already),
        count(Outcome::Skipped),
        count(Outcome::Failed),
        rows.len(),
        if args.dry_run { " (dry run: nothing was changed)" } else { "" },
    );
    match format {
        Format::Json => {
            _ = output::print_json(&json!({
                "dryRun": args.dry_run,
                "rows": results.iter().map(|it| {
                    let mut row = json!({"row": it.row, "user": it.user, "result": it.outcome.label(), "detail": it.detail});
                    if let (Some(row), Some(extra)) = (row.as_object_mut(), it.extra.as_object()) {
                        row.extend(extra.clone());
                    }
                    row
                }).collect::<Vec<_>>(),
                "summary": {
                    "changed": count(Outcome::Changed), "held": count(Outcome::Held), "wouldChange": count(Outcome::WouldChange),
                    "already": count(Outcome::Already), "skipped": count(Outcome::Skipped), "failed": count(Outcome::Failed),
                    "stoppedAtRow": stopped_at,
                },
            }))
        }
        _ => {
            let mut table = Rows::new(&["row", "user", "result", "detail"]);
            for it in &results {
                table.push_toned(vec![
                    (it.row.to_string(), Tone::Plain),
                    (it.user.clone(), Tone::Plain),
                    (it.outcome.label().to_owned(), it.outcome.tone()),
                    (it.detail.clone(), Tone::Plain),
                ]);
            }
            table.print(format);
            if format == Format::Table {
                output::print(&summary);
            } else {
                output::note(&summary);
            }
        }
    }
    if let Some(row) = stopped_at {
        let why = if interrupted.load(Ordering::SeqCst) { "Interrupted" } else { "Stopped (see the last row's error)" };
        output::note(&format!(
            "{why} before row {row}: after fixing the cause, run the same command again; the rows it finished are \
             remembered and not done twice (or start at a row with --continue-from {row})."
        ));
        let code = if interrupted.load(Ordering::SeqCst) { exit::INTERRUPTED } else { exit::ROWS_FAILED };
        return Err(Failure::silent(code).into());
    }
    if count(Outcome::Failed) > 0 {
        return Err(Failure::silent(exit::ROWS_FAILED).into());
    }
    Ok(())
}

async fn one_row(
    graph: &Graph,
    operation: &Operation,
    row: &Row,
    dry_run: bool,
    lookups: &mut Lookups,
    seen: &mut HashMap<RowKey, u64>,
) -> RowResult {
    let mut result = RowResult::new(row, Outcome::Failed, "");
    let planned = plan(graph, operation, row, lookups).await;
    let fail = |mut result: RowResult, err: anyhow::Error| {
        let failure = Failure::of(&err);
        result.failure_code = failure.code;
        result.detail = failure.message;
        result
    };
    let plan = match planned {
        Ok(it) => it,
        Err(err) => return fail(result, err),
    };
    match plan {
        Plan::Already(detail) => {
            result.outcome = Outcome::Already;
            result.detail = detail;
            result
        }
        Plan::Change { detail, target } => {
            let key = (
                target.user_id.clone(),
                target.role_id.clone().unwrap_or_default(),
                target.scope.clone(),
                target.state.clone().unwrap_or_default(),
            );
            if let Some(first) = seen.get(&key) {
                result.outcome = Outcome::Skipped;
                result.detail = format!("the same as row {first}");
                return result;
            }
            seen.insert(key, row.number);
            if dry_run {
                result.outcome = Outcome::WouldChange;
                result.detail = detail;
                return result;
            }
            match apply(graph, operation, &target).await {
                Ok((detail, extra)) if extra.get("serviceDeskRequest").is_some() => {
                    result.outcome = Outcome::Held;
                    result.detail = detail;
                    result.extra = extra;
                    result
                }
                Ok((detail, extra)) => {
                    result.outcome = Outcome::Changed;
                    result.detail = detail;
                    result.extra = extra;
                    result
                }
                Err(err) => fail(result, err),
            }
        }
    }
}

/// Waits for Ctrl-C, SIGTERM or SIGHUP: the first lets the row in flight finish and stops the
/// run there; a second stops at once.
async fn watch_signals(interrupted: Arc<AtomicBool>, in_flight: Arc<AtomicU64>) {
    loop {
        if !next_signal().await {
            return;
        }
        let row = in_flight.load(Ordering::SeqCst);
        if interrupted.swap(true, Ordering::SeqCst) {
            output::note(&format!(
                "Stopped during row {row}, which may or may not have been done. Run the same command again to go on: \
                 finished rows are remembered."
            ));
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
        output::note(&format!("Stopping after row {row}; interrupt again to stop at once."));
    }
}

#[cfg(unix)]
async fn next_signal() -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut hangup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
        return tokio::signal::ctrl_c().await.is_ok();
    };
    tokio::select! {
        it = tokio::signal::ctrl_c() => it.is_ok(),
        _ = terminate.recv() => true,
        _ = hangup.recv() => true,
    }
}

#[cfg(not(unix))]
async fn next_signal() -> bool {
    tokio::signal::ctrl_c().await.is_ok()
}

/// The rows a real run has finished, kept in the config directory under a name derived from
/// the server, the operation and the rows, so that running the same command again after a crash
/// or an interruption does no row twice. Removed when a run finishes with no failure; ignored
/// after a day. A crash between the server's change and the journal's line can still repeat
/// that one row.
struct Journal {
    path: PathBuf,
    file: std::fs::File,
    done: std::collections::HashSet<u64>,
}

impl Journal {
    fn open(graph: &Graph, operation: &Operation, rows: &[Row]) -> anyhow::Result<Journal> {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        hash.update(graph.session().server.url.as_bytes());
        hash.update(format!("\n{operation:?}\n").as_bytes());
        for row in rows {
            hash.update(format!("{row:?}\n").as_bytes());
        }
        let name: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let dir = super::session::config_dir()?.join("runs");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{name}.done"));
        // A day-old journal belongs to another day's work: start over.
        let is_stale = std::fs::metadata(&path)
            .and_then(|it| it.modified())
            .ok()
            .and_then(|it| it.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(86_400));
        if is_stale {
            let _ = std::fs::remove_file(&path);
        }
        let done = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|it| it.trim().parse().ok())
            .collect();
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Journal { path, file, done })
    }

    fn record(&mut self, row: u64) -> anyhow::Result<()> {
        use std::io::Write;
        writeln!(self.file, "{row}").and_then(|()| self.file.sync_data()).with_context(|| {
            format!("cannot record progress in {}; stop and run the command again", self.path.display())
        })?;
        self.done.insert(row);
        Ok(())
    }

    fn finish(self, is_complete: bool) {
        if is_complete {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads only: who the row names, and whether the change is already made.
async fn plan(graph: &Graph, operation: &Operation, row: &Row, lookups: &mut Lookups) -> anyhow::Result<Plan> {
    if row.user.is_empty() {
        return Err(Failure::usage("the row names no user").into());
    }
    let user = graph.user(&row.user, "id,userPrincipalName,displayName").await?;
    let user_id = user["id"].as_str().unwrap_or_default().to_owned();
    let mut target =
        Target { user_id: user_id.clone(), role_id: None, scope: "/".into(), assignment_id: None, state: None };
    if operation.needs_role() {
        let role = row.role.as_deref().ok_or_else(|| Failure::usage("no role: give --role or a role column"))?;
        let (role_id, role_name) = resolve_role(graph, lookups, role).await?;
        target.scope = resolve_scope(graph, lookups, row.scope.as_deref()).await?;
        let filter = format!(
            "principalId eq {} and roleDefinitionId eq {} and directoryScopeId eq {}",
            literal(&user_id),
            literal(&role_id),
            literal(&target.scope)
        );
        let existing = graph
            .list(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter={}", encode(&filter)), None, false)
            .await?;
        target.assignment_id = existing.first().and_then(|it| it["id"].as_str()).map(str::to_owned);
        target.role_id = Some(role_id);
        let at = if target.scope == "/" { String::new() } else { format!(" at {}", target.scope) };
        return Ok(match (operation, &target.assignment_id) {
            (Operation::AssignRole, Some(_)) => Plan::Already(format!("already holds {role_name}{at}")),
            (Operation::AssignRole, None) => Plan::Change { detail: format!("assign {role_name}{at}"), target },
            (_, None) => Plan::Already(format!("does not hold {role_name}{at}")),
            (_, Some(_)) => Plan::Change { detail: format!("remove {role_name}{at}"), target },
        });
    }
    let methods_path = format!("/v1.0/users/{}/authentication/methods", encode(&user_id));
    let is_type = |method: &Value, kind: &str| method["@odata.type"].as_str().is_some_and(|it| it.ends_with(kind));
    Ok(match operation {
        Operation::RequireReregistration => {
            let methods = graph.list(&methods_path, None, false).await?;
            let count = methods
                .iter()
                .filter(|it| {
                    is_type(it, "softwareOathAuthenticationMethod") || is_type(it, "phoneAuthenticationMethod")
                })
                .count();
            if count == 0 {
                Plan::Already("no authenticator app or phone to re-register".into())
            } else {
                Plan::Change { detail: format!("removes {count} authenticator app and phone method(s)"), target }
            }
        }
        Operation::CreatePass { .. } => {
            let methods = graph.list(&methods_path, None, false).await?;
            // A usable pass is not replaced (its code may already be in the user's hands); an
            // expired or used one is: the server keeps one pass per user.
            let pass = methods.iter().find(|it| is_type(it, "temporaryAccessPassAuthenticationMethod"));
            match pass {
                Some(pass) if pass["isUsable"] == true => Plan::Already(format!(
                    "already has a usable pass (created {}); mfa reset --with-tap replaces it",
                    pass["createdDateTime"].as_str().unwrap_or("earlier")
                )),
                Some(_) => Plan::Change { detail: "replace the unusable pass with a new one".into(), target },
                None => Plan::Change { detail: "create a pass".into(), target },
            }
        }
        Operation::SetPerUserMfa => {
            let state = row.state.clone().ok_or_else(|| Failure::usage("no state: give --state or a state column"))?;
            if !["disabled", "enabled", "enforced"].contains(&state.as_str()) {
                return Err(Failure::usage(format!("state '{state}' is not disabled, enabled or enforced")).into());
            }
            let current = graph.get(&format!("/beta/users/{}/authentication/requirements", encode(&user_id))).await?;
            let current = current["perUserMfaState"].as_str().unwrap_or("disabled").to_owned();
            target.state = Some(state.clone());
            if current == state {
                Plan::Already(format!("per-user MFA is already {state}"))
            } else {
                Plan::Change { detail: format!("per-user MFA {current} → {state}"), target }
            }
        }
        Operation::RevokeMfaSessions => Plan::Change { detail: "revoke MFA sessions".into(), target },
        Operation::RevokeSessions => Plan::Change { detail: "revoke sign-in sessions".into(), target },
        Operation::ResetMfa { pass } => Plan::Change {
            detail: if pass.is_some() { "reset MFA and create a pass".into() } else { "reset MFA".into() },
            target,
        },
        Operation::AssignRole | Operation::UnassignRole => {
            return Err(anyhow::anyhow!("role operations are planned above"));
        }
    })
}

fn pass_body(lifetime_minutes: Option<u32>, is_usable_once: bool) -> Value {
    let mut body = json!({"isUsableOnce": is_usable_once});
    if let Some(minutes) = lifetime_minutes {
        body["lifetimeInMinutes"] = json!(minutes);
    }
    body
}

fn pass_detail(pass: &Value) -> (String, Value) {
    let code = pass["temporaryAccessPass"].as_str().unwrap_or_default();
    let detail = format!(
        "pass {code} (from {}, {} minutes{})",
        pass["startDateTime"].as_str().unwrap_or("now"),
        pass["lifetimeInMinutes"],
        if pass["isUsableOnce"] == true { ", usable once" } else { "" }
    );
    (detail, json!({"temporaryAccessPass": pass}))
}

/// A `202` of dual control: the request it holds, what to show and what to add to the row's JSON
/// (`serviceDeskRequest`, with the pass that works once approved).
fn held(answer: &Value) -> Option<(String, Value)> {
    if answer["status"] != "pendingApproval" || !answer["operation"].is_string() {
        return None;
    }
    let mut detail = format!(
        "held for a second administrator's approval: request {} (expires {})",
        answer["id"].as_str().unwrap_or_default(),
        answer["expirationDateTime"].as_str().unwrap_or_default()
    );
    if let Some(pass) = answer["pendingTemporaryAccessPass"].as_str() {
        detail.push_str(&format!("; pass {pass} works once approved"));
    }
    Some((detail, json!({"serviceDeskRequest": answer})))
}

/// Makes the change; returns what to show and what to add to the row's JSON (a change dual
/// control holds: see [`held`]).
async fn apply(graph: &Graph, operation: &Operation, target: &Target) -> anyhow::Result<(String, Value)> {
    let user = encode(&target.user_id);
    Ok(match operation {
        Operation::RequireReregistration => {
            let answer =
                graph.post(&format!("/v1.0/users/{user}/authentication/requireMfaReregistration"), &json!({})).await?;
            held(&answer).unwrap_or_else(|| ("re-registration required".into(), Value::Null))
        }
        Operation::RevokeMfaSessions => {
            graph.post(&format!("/v1.0/users/{user}/authentication/revokeMfaSessions"), &json!({})).await?;
            ("MFA sessions revoked".into(), Value::Null)
        }
        Operation::RevokeSessions => {
            graph.post(&format!("/v1.0/users/{user}/revokeSignInSessions"), &json!({})).await?;
            ("sign-in sessions revoked".into(), Value::Null)
        }
        Operation::CreatePass { lifetime_minutes, is_usable_once } => {
            let body = pass_body(*lifetime_minutes, *is_usable_once);
            let pass =
                graph.post(&format!("/v1.0/users/{user}/authentication/temporaryAccessPassMethods"), &body).await?;
            held(&pass).unwrap_or_else(|| pass_detail(&pass))
        }
        Operation::SetPerUserMfa => {
            let state = target.state.clone().unwrap_or_default();
            graph
                .patch(&format!("/beta/users/{user}/authentication/requirements"), &json!({"perUserMfaState": state}))
                .await?;
            (format!("per-user MFA {state}"), Value::Null)
        }
        Operation::ResetMfa { pass } => {
            let body = match pass {
                Some((lifetime, once)) => json!({"temporaryAccessPass": pass_body(*lifetime, *once)}),
                None => json!({}),
            };
            let answer = graph.post(&format!("/v1.0/users/{user}/authentication/resetMfa"), &body).await?;
            if let Some(held) = held(&answer) {
                return Ok(held);
            }
            match answer.get("temporaryAccessPass").filter(|it| it.is_object()) {
                Some(pass) => {
                    let (detail, extra) = pass_detail(pass);
                    (format!("MFA reset; {detail}"), extra)
                }
                None => ("MFA reset: re-registration required, MFA and sign-in sessions revoked".into(), Value::Null),
            }
        }
        Operation::AssignRole => {
            let body = json!({
                "principalId": target.user_id,
                "roleDefinitionId": target.role_id,
                "directoryScopeId": target.scope,
            });
            let created = graph.post("/v1.0/roleManagement/directory/roleAssignments", &body).await?;
            ("assigned".into(), json!({"roleAssignmentId": created["id"]}))
        }
        Operation::UnassignRole => {
            let id = target.assignment_id.clone().unwrap_or_default();
            graph.delete(&format!("/v1.0/roleManagement/directory/roleAssignments/{}", encode(&id))).await?;
            ("removed".into(), Value::Null)
        }
    })
}

/// Every role definition, read once.
async fn roles<'a>(graph: &Graph, lookups: &'a mut Lookups) -> anyhow::Result<&'a [Value]> {
    if lookups.roles.is_none() {
        lookups.roles = Some(graph.list("/v1.0/roleManagement/directory/roleDefinitions", None, false).await?);
    }
    Ok(lookups.roles.as_deref().unwrap_or_default())
}

/// A role by name or id (any case): its id and name.
pub fn resolve_role_in(roles: &[Value], key: &str) -> anyhow::Result<(String, String)> {
    let key = key.trim();
    roles
        .iter()
        .find(|it| {
            it["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(key))
                || it["templateId"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(key))
                || it["displayName"].as_str().is_some_and(|name| name.eq_ignore_ascii_case(key))
        })
        .map(|it| {
            (
                it["id"].as_str().unwrap_or_default().to_owned(),
                it["displayName"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .ok_or_else(|| {
            Failure::new(exit::NOT_FOUND, format!("there is no role '{key}'; keyward roles list shows them")).into()
        })
}

async fn resolve_role(graph: &Graph, lookups: &mut Lookups, key: &str) -> anyhow::Result<(String, String)> {
    resolve_role_in(roles(graph, lookups).await?, key)
}

/// [`resolve_scope`] for a single command.
pub async fn scope_id(graph: &Graph, scope: Option<&str>) -> anyhow::Result<String> {
    resolve_scope(graph, &mut Lookups::default(), scope).await
}

/// `/`, `au:NAME`, `au:ID` or `/administrativeUnits/ID` as a directory scope id.
async fn resolve_scope(graph: &Graph, lookups: &mut Lookups, scope: Option<&str>) -> anyhow::Result<String> {
    let scope = scope.map(str::trim).unwrap_or("/");
    if scope.is_empty() || scope == "/" || scope.eq_ignore_ascii_case("tenant") {
        return Ok("/".into());
    }
    if scope.starts_with("/administrativeUnits/") {
        return Ok(scope.to_owned());
    }
    let Some(unit) = scope.strip_prefix("au:") else {
        return Err(Failure::usage(format!(
            "scope '{scope}' is not / (the tenant), au:NAME or au:ID (an administrative unit)"
        ))
        .into());
    };
    if let Some(id) = lookups.units.get(unit) {
        return Ok(id.clone());
    }
    // Units are few; Keyward's unit collection takes no $filter, so match names here.
    let units = graph.list("/v1.0/directory/administrativeUnits", None, false).await?;
    let found: Vec<&Value> = units
        .iter()
        .filter(|it| {
            it["displayName"].as_str().is_some_and(|name| name.eq_ignore_ascii_case(unit))
                || it["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(unit))
        })
        .collect();
    let id = match &found[..] {
        [one] => one["id"].as_str().unwrap_or_default().to_owned(),
        [] => return Err(Failure::new(exit::NOT_FOUND, format!("there is no administrative unit '{unit}'")).into()),
        _ => return Err(Failure::usage(format!("several administrative units are named '{unit}'; give au:ID")).into()),
    };
    let scope = format!("/administrativeUnits/{id}");
    lookups.units.insert(unit.to_owned(), scope.clone());
    Ok(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_take_any_case_headers_and_skip_blank_lines() {
        let dir = std::env::temp_dir().join(format!("keyward-bulk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("rows.csv");
        std::fs::write(&path, "\u{feff}UserPrincipalName,Role,Scope,notes\nadele@x.test,Helpdesk Administrator,,\n\n ,x,,\n\"o'brien@x.test\",,au:Sales,hi\n").expect("write");
        let rows = read_csv(&path).expect("rows");
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(
            (rows[0].number, rows[0].user.as_str(), rows[0].role.as_deref()),
            (1, "adele@x.test", Some("Helpdesk Administrator"))
        );
        assert_eq!(rows[1].user, "", "a row without a user is kept, to fail as such");
        assert_eq!((rows[2].number, rows[2].scope.as_deref()), (3, Some("au:Sales")), "blank lines are not rows");
        std::fs::write(&path, "mail,role\nadele@x.test,x\n").expect("write");
        let err = read_csv(&path).expect_err("no user column");
        assert!(err.to_string().contains("no userPrincipalName or id column"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
