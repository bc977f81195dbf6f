//! The `keyward` binary as an administrator's remote client: it signs in to a Keyward server
//! with the device-code flow and acts through the server's Graph API (never on its database).
//!
//! Layout: `session` keeps sign-ins, `client` sends requests, `output` shows results, `bulk`
//! runs one operation on many users, and this module defines the commands and runs the simple
//! ones.

pub mod bulk;
pub mod client;
pub mod output;
pub mod session;

use std::collections::HashMap;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use bulk::{BulkArgs, Operation, Row};
use client::{Graph, encode, id_segment, literal};
use output::{Format, OutputArgs};

/// Exit codes of the remote commands (also in `keyward --help` and docs/guide/command-line.md).
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const SESSION: u8 = 3;
    pub const FORBIDDEN: u8 = 4;
    pub const NOT_FOUND: u8 = 5;
    pub const ROWS_FAILED: u8 = 6;
    pub const UNREACHABLE: u8 = 7;
    pub const INTERRUPTED: u8 = 130;
}

/// The end of `keyward --help`: where to start, and the exit codes.
pub const TOP_HELP: &str = "Serving: keyward serve --demo. Administering a server from anywhere: keyward login --url URL, \
    then keyward users|groups|roles|mfa|audit list|signins|notifications … (keyward help COMMAND shows examples).\n\n\
    Exit codes:\n  \
    0    success\n  \
    1    the command failed (the message says why)\n  \
    2    wrong usage: a missing or bad argument, a bad CSV file\n  \
    3    not logged in, or the session ended: run keyward login\n  \
    4    refused: your roles do not allow it (the message names roles that would)\n  \
    5    not found: no such user, group, role or unit\n  \
    6    a bulk run finished, but at least one row failed (see its table)\n  \
    7    the server could not be reached\n  \
    130  interrupted (Ctrl-C); a bulk run says which --continue-from goes on";

/// A failure with its exit code and a message that names the cause and the fix.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(exit::USAGE, message)
    }

    /// An exit code whose explanation was already printed.
    pub fn silent(code: u8) -> Failure {
        Failure::new(code, String::new())
    }

    /// The failure an error stands for (other errors exit with 1).
    pub fn of(err: &anyhow::Error) -> Failure {
        match err.downcast_ref::<Failure>() {
            Some(it) => Failure::new(it.code, it.message.clone()),
            None => Failure::new(exit::FAILURE, format!("{err:#}")),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Which signed-in server a command talks to.
#[derive(Debug, Clone, Args)]
pub struct ServerArg {
    /// Remote commands: the session to use, by the name given to keyward login --name [default: the
    /// last one logged in to].
    #[arg(long, env = "KEYWARD_SERVER", value_name = "NAME", global = true)]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  keyward login --url https://keyward.contoso.com\n  \
    keyward login --url https://localhost:8443 --name dev --ca-cert ./keyward-data/dev-tls-cert.pem\n  \
    keyward login --url http://localhost:8080 --name local")]
pub struct LoginArgs {
    /// The server's address, e.g. https://keyward.contoso.com.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// A name for this server, to keep sessions with several (use it with --server).
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub name: String,
    /// The tenant's domain or id [default: the server's home tenant].
    #[arg(long, value_name = "DOMAIN")]
    pub tenant: Option<String>,
    /// A PEM file of certificates to trust for this server (for a self-signed certificate).
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Do not open a browser, only print the address and the code.
    #[arg(long)]
    pub no_browser: bool,
    /// Allow plain http:// to a server that is not on this machine (tokens cross the network in clear).
    #[arg(long)]
    pub allow_http: bool,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users.
    #[command(
        after_help = "Examples:\n  keyward users list\n  keyward users list --filter \"startswith(displayName,'Ad')\"\n  \
        keyward users list --search \"displayName:vance\" --select displayName,mail --json"
    )]
    List {
        /// An OData filter, as Graph's $filter.
        #[arg(long, value_name = "FILTER")]
        filter: Option<String>,
        /// Graph's $search, e.g. "displayName:adele" (sent with ConsistencyLevel: eventual).
        #[arg(long, value_name = "SEARCH")]
        search: Option<String>,
        /// Properties to show, comma-separated.
        #[arg(long, value_name = "PROPERTIES")]
        select: Option<String>,
        /// At most this many users.
        #[arg(long, value_name = "N")]
        top: Option<usize>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one user.
    #[command(after_help = "Example:\n  keyward users show adele@contoso.com --select displayName,accountEnabled")]
    Show {
        /// Sign-in name (UPN) or object id.
        user: String,
        #[arg(long, value_name = "PROPERTIES")]
        select: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Create a user; without --password-stdin a password is generated and printed once.
    #[command(after_help = "Example:\n  keyward users create --upn lee@contoso.com --display-name \"Lee Gu\"")]
    Create {
        #[arg(long, value_name = "UPN")]
        upn: String,
        #[arg(long, value_name = "NAME")]
        display_name: String,
        /// Mail nickname [default: the part of the UPN before @].
        #[arg(long, value_name = "ALIAS")]
        mail_nickname: Option<String>,
        /// Read the initial password from standard input (kept off the command line).
        #[arg(long)]
        password_stdin: bool,
        /// Do not make the user change the password at first sign-in.
        #[arg(long)]
        no_password_change: bool,
        /// Create the account disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Change a user's properties.
    #[command(
        after_help = "Examples:\n  keyward users update adele@contoso.com --job-title Manager --department Sales\n  \
        keyward users update adele@contoso.com --set usageLocation=NO --set officeLocation=\"18/2111\""
    )]
    Update {
        user: String,
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
        #[arg(long, value_name = "TITLE")]
        job_title: Option<String>,
        #[arg(long, value_name = "DEPARTMENT")]
        department: Option<String>,
        /// Any property: NAME=VALUE (VALUE as JSON when it parses, else as text); repeatable.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Disable a user's account (it can no longer sign in).
    #[command(after_help = "Example:\n  keyward users disable adele@contoso.com")]
    Disable { user: String },
    /// Enable a disabled account.
    #[command(after_help = "Example:\n  keyward users enable adele@contoso.com")]
    Enable { user: String },
    /// Delete a user (kept 30 days in deleted items, restorable).
    #[command(after_help = "Example:\n  keyward users delete adele@contoso.com --yes")]
    Delete {
        user: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List groups.
    #[command(after_help = "Example:\n  keyward groups list --filter \"startswith(displayName,'Help')\"")]
    List {
        #[arg(long, value_name = "FILTER")]
        filter: Option<String>,
        #[arg(long, value_name = "PROPERTIES")]
        select: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one group (by id or display name).
    #[command(after_help = "Example:\n  keyward groups show \"Helpdesk Team\"")]
    Show {
        group: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Create a security group.
    #[command(after_help = "Example:\n  keyward groups create --name \"Service Desk\" --role-assignable")]
    Create {
        #[arg(long, value_name = "NAME")]
        name: String,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Mail nickname [default: from the name].
        #[arg(long, value_name = "ALIAS")]
        mail_nickname: Option<String>,
        /// May hold directory roles (only Privileged Role Administrators and Global Administrators manage it).
        #[arg(long)]
        role_assignable: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete a group.
    #[command(after_help = "Example:\n  keyward groups delete \"Old Team\" --yes")]
    Delete {
        group: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List a group's members.
    #[command(after_help = "Example:\n  keyward groups members \"Helpdesk Team\" --json")]
    Members {
        group: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Add a user to a group.
    #[command(after_help = "Example:\n  keyward groups add-member \"Helpdesk Team\" hana@contoso.com")]
    AddMember { group: String, user: String },
    /// Remove a user from a group.
    #[command(after_help = "Example:\n  keyward groups remove-member \"Helpdesk Team\" hana@contoso.com")]
    RemoveMember { group: String, user: String },
}

/// The user and role of `roles assign` and `roles unassign`.
#[derive(Debug, Args)]
pub struct AssignArgs {
    /// Role name or id (a CSV's `role` column overrides it).
    #[arg(long, value_name = "NAME_OR_ID")]
    pub role: Option<String>,
    /// Users (sign-in names or ids); or --from-csv.
    #[arg(long = "user", value_name = "UPN")]
    pub users: Vec<String>,
    /// Where the role applies: / (the tenant, the default), au:NAME or au:ID (an administrative unit).
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<String>,
    #[command(flatten)]
    pub bulk: BulkArgs,
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// List role definitions (built-in and custom).
    #[command(after_help = "Example:\n  keyward roles list --output csv")]
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show a role: what it allows and who holds it.
    #[command(after_help = "Example:\n  keyward roles show \"Authentication Administrator\"")]
    Show {
        role: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List role assignments, of a user or of a role.
    #[command(
        after_help = "Examples:\n  keyward roles assignments --user alex@contoso.com\n  keyward roles assignments --role \"Global Administrator\""
    )]
    Assignments {
        #[arg(long, value_name = "UPN")]
        user: Option<String>,
        #[arg(long, value_name = "NAME_OR_ID")]
        role: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Assign a role to users.
    #[command(
        after_help = "Examples:\n  keyward roles assign --role \"Helpdesk Administrator\" --user hana@contoso.com\n  \
        keyward roles assign --role \"Authentication Administrator\" --user alex@contoso.com --scope au:Sales\n  \
        keyward roles assign --from-csv desk.csv --dry-run\n\n\
        CSV: a header row, a userPrincipalName (or id) column, a role column (name or id), an optional scope column\n\
        (/, au:NAME or au:ID). Rows that already hold the role are reported, not repeated."
    )]
    Assign(AssignArgs),
    /// Remove a role from users.
    #[command(
        after_help = "Examples:\n  keyward roles unassign --role \"Helpdesk Administrator\" --user hana@contoso.com\n  \
        keyward roles unassign --from-csv leavers.csv"
    )]
    Unassign(AssignArgs),
    /// Your just-in-time roles: those you may activate, those active now, and your requests
    /// waiting for approval.
    #[command(after_help = "Example:\n  keyward roles mine")]
    Mine {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Activate a role you are eligible for, for some hours, with a justification. Needs a
    /// sign-in with MFA within the last 10 minutes (run `keyward login` again if refused).
    #[command(
        after_help = "Examples:\n  keyward roles activate \"Privileged Authentication Administrator\" --hours 2 \\\n    \
        --justification \"INC-4711: caller lost their phone\"\n  \
        keyward roles activate \"Helpdesk Administrator\" --scope au:Sales --hours 1 --justification \"rota\" --ticket CHG-12"
    )]
    Activate {
        /// The role: its name or id.
        role: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        justification: String,
        /// For how many hours (1 to 24; the role's settings may allow fewer).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=24))]
        hours: u32,
        /// Where: / (the tenant, the default), au:NAME or au:ID.
        #[arg(long, value_name = "SCOPE")]
        scope: Option<String>,
        /// A ticket number, where the role's settings ask for one.
        #[arg(long)]
        ticket: Option<String>,
    },
    /// Deactivate a role you activated, before it ends.
    #[command(after_help = "Example:\n  keyward roles deactivate \"Privileged Authentication Administrator\"")]
    Deactivate {
        role: String,
        #[arg(long, value_name = "SCOPE")]
        scope: Option<String>,
    },
    /// Activations waiting for your approval.
    #[command(after_help = "Example:\n  keyward roles pending")]
    Pending {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Approve an activation waiting for you (its request id, from `keyward roles pending`).
    #[command(after_help = "Example:\n  keyward roles approve 5f0c… --justification \"called the requester back\"")]
    Approve {
        request: String,
        #[arg(long)]
        justification: String,
    },
    /// Deny an activation waiting for you.
    #[command(after_help = "Example:\n  keyward roles deny 5f0c… --justification \"no ticket for this\"")]
    Deny {
        request: String,
        #[arg(long)]
        justification: String,
    },
}

/// Users for an MFA operation: arguments or a CSV.
#[derive(Debug, Args)]
pub struct UsersArgs {
    /// Users: sign-in names (UPN) or object ids; or --from-csv.
    #[arg(value_name = "UPN")]
    pub users: Vec<String>,
    #[command(flatten)]
    pub bulk: BulkArgs,
}

#[derive(Debug, Subcommand)]
pub enum MfaCommand {
    /// List a user's authentication methods.
    #[command(after_help = "Example:\n  keyward mfa methods adele@contoso.com")]
    Methods {
        user: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Remove users' authenticator apps and phones so they register MFA again at next sign-in.
    #[command(after_help = "Examples:\n  keyward mfa require-reregistration adele@contoso.com\n  \
        keyward mfa require-reregistration --from-csv lost-phones.csv --dry-run")]
    RequireReregistration(UsersArgs),
    /// Make users do MFA again on their next sign-in (remembered devices are forgotten).
    #[command(after_help = "Example:\n  keyward mfa revoke-mfa-sessions adele@contoso.com megan@contoso.com")]
    RevokeMfaSessions(UsersArgs),
    /// Sign users out everywhere (refresh tokens and sessions stop working).
    #[command(after_help = "Example:\n  keyward mfa revoke-sessions adele@contoso.com")]
    RevokeSessions(UsersArgs),
    /// Temporary Access Passes.
    Tap {
        #[command(subcommand)]
        command: TapCommand,
    },
    /// Per-user MFA (the legacy setting).
    PerUser {
        #[command(subcommand)]
        command: PerUserCommand,
    },
    /// The one-step reset: require re-registration, revoke MFA and sign-in sessions, optionally a pass.
    #[command(
        after_help = "Examples:\n  keyward mfa reset adele@contoso.com\n  keyward mfa reset adele@contoso.com --with-tap --lifetime 1h --once"
    )]
    Reset {
        #[command(flatten)]
        users: UsersArgs,
        /// Also create a Temporary Access Pass (shown once).
        #[arg(long)]
        with_tap: bool,
        /// The pass's lifetime, e.g. 1h or 90m [default: the methods policy's].
        #[arg(long, value_name = "DURATION", value_parser = parse_minutes, requires = "with_tap")]
        lifetime: Option<u32>,
        /// The pass works for one sign-in only.
        #[arg(long, requires = "with_tap")]
        once: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TapCommand {
    /// Create a Temporary Access Pass (its code is shown once).
    #[command(after_help = "Examples:\n  keyward mfa tap create adele@contoso.com --lifetime 1h --once\n  \
        (umask 077; keyward mfa tap create --from-csv new-starters.csv --json --yes > passes.json)")]
    Create {
        #[command(flatten)]
        users: UsersArgs,
        /// Lifetime, e.g. 1h, 90m or 8h [default: the methods policy's].
        #[arg(long, value_name = "DURATION", value_parser = parse_minutes)]
        lifetime: Option<u32>,
        /// The pass works for one sign-in only.
        #[arg(long)]
        once: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PerUserCommand {
    /// Set users' per-user MFA state.
    #[command(after_help = "Example:\n  keyward mfa per-user set adele@contoso.com megan@contoso.com --state enforced")]
    Set {
        #[command(flatten)]
        users: UsersArgs,
        /// The state (a CSV's state column overrides it).
        #[arg(long, value_parser = ["disabled", "enabled", "enforced"])]
        state: Option<String>,
    },
}

/// `keyward audit list`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  keyward audit list --since 7d\n  keyward audit list --user adele@contoso.com --activity \"Update user\"\n  \
    keyward audit list --initiator alex@contoso.com --follow"
)]
pub struct AuditListArgs {
    /// Only records about this user (a target).
    #[arg(long, value_name = "UPN")]
    pub user: Option<String>,
    /// Only records of what this user did.
    #[arg(long, value_name = "UPN")]
    pub initiator: Option<String>,
    /// Only this activity, e.g. "Update user" or "Add member to role".
    #[arg(long, value_name = "NAME")]
    pub activity: Option<String>,
    /// Only records since: a duration back (30m, 12h, 7d) or a time (2026-11-01, RFC 3339).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<time::OffsetDateTime>,
    /// At most this many records (newest first) [default: 100].
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub top: usize,
    /// Keep watching and print new records as they come (Ctrl-C stops).
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum SigninsCommand {
    /// List sign-ins, newest first.
    #[command(
        after_help = "Examples:\n  keyward signins list --user adele@contoso.com --since 1d\n  keyward signins list --failures --follow"
    )]
    List {
        #[arg(long, value_name = "UPN")]
        user: Option<String>,
        /// Only failed sign-ins.
        #[arg(long)]
        failures: bool,
        #[arg(long, value_name = "WHEN", value_parser = parse_since)]
        since: Option<time::OffsetDateTime>,
        #[arg(long, value_name = "N", default_value_t = 100)]
        top: usize,
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// List the outbox, newest first: each message's kind, recipient, subject and delivery state.
    #[command(
        after_help = "Examples:\n  keyward notifications list\n  keyward notifications list --state failed --json"
    )]
    List {
        /// Only messages in this state.
        #[arg(long, value_name = "STATE", value_parser = ["pending", "sent", "failed", "noAddress"])]
        state: Option<String>,
        #[arg(long, value_name = "N", default_value_t = 100)]
        top: usize,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// "1h", "90m", "2d" or plain minutes, as minutes.
pub fn parse_minutes(raw: &str) -> Result<u32, String> {
    let raw = raw.trim();
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let number: u32 = number.parse().map_err(|_| format!("'{raw}' is not a duration: give 90m, 1h or 1d"))?;
    let minutes = match unit {
        "" | "m" | "min" => Some(number),
        "h" => number.checked_mul(60),
        "d" => number.checked_mul(1440),
        _ => None,
    };
    minutes.filter(|it| *it > 0).ok_or_else(|| format!("'{raw}' is not a duration: give 90m, 1h or 1d"))
}

/// A time back from now ("7d", "12h", "30m") or a date/time.
pub fn parse_since(raw: &str) -> Result<time::OffsetDateTime, String> {
    if raw.ends_with(['m', 'h', 'd']) && raw[..raw.len() - 1].chars().all(|c| c.is_ascii_digit()) {
        let minutes = parse_minutes(raw)?;
        return Ok(time::OffsetDateTime::now_utc() - time::Duration::minutes(i64::from(minutes)));
    }
    crate::cli::parse_time(raw)
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn unix_time(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds).map(rfc3339).unwrap_or_default()
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let url = session::server_url(&args.url, args.allow_http)?;
    let request = session::LoginRequest {
        url,
        name: args.name.clone(),
        tenant: args.tenant,
        ca_cert: args.ca_cert,
        open_browser: !args.no_browser,
    };
    let server = session::login(request, &mut |text| output::note(text)).await?;
    output::print(&format!(
        "Logged in to {} as {} (session '{}'; commands use it unless --server names another).",
        server.url, server.user_principal_name, args.name
    ));
    Ok(())
}

pub async fn logout(server: Option<&str>, all: bool) -> anyhow::Result<()> {
    let outcomes = session::logout(server, all).await?;
    if outcomes.is_empty() {
        output::print("You were not logged in.");
    }
    for (name, problem) in outcomes {
        match problem {
            None => _ = output::print(&format!("Logged out of '{name}'; the server revoked the session.")),
            Some(why) => {
                _ = output::print(&format!(
                    "Logged out of '{name}' on this machine, but the server could not revoke the session ({why}); it ends \
                 after 90 days unused, or revoke it with keyward mfa revoke-sessions YOUR-UPN from another session."
                ))
            }
        }
    }
    Ok(())
}

pub async fn whoami(server: Option<&str>, output_args: &OutputArgs) -> anyhow::Result<()> {
    let graph = Graph::connect(server).await?;
    let me = graph.get("/v1.0/me?$select=id,displayName,userPrincipalName").await?;
    let organization = graph.list("/v1.0/organization", None, false).await.unwrap_or_default();
    let id = me["id"].as_str().unwrap_or_default().to_owned();
    let filter = format!("principalId eq {}", literal(&id));
    let path = format!("/v1.0/roleManagement/directory/transitiveRoleAssignments?$filter={}", encode(&filter));
    let definitions = graph.list("/v1.0/roleManagement/directory/roleDefinitions", None, false).await;
    let roles: Result<Vec<String>, String> = match (graph.list(&path, None, true).await, definitions) {
        (Ok(assignments), Ok(definitions)) => Ok(assignments
            .iter()
            .map(|it| {
                let role = it["roleDefinitionId"].as_str().unwrap_or_default();
                let name = definitions
                    .iter()
                    .find(|def| def["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(role)))
                    .and_then(|def| def["displayName"].as_str())
                    .unwrap_or(role);
                match it["directoryScopeId"].as_str() {
                    Some("/") | None => name.to_owned(),
                    Some(scope) => format!("{name} ({scope})"),
                }
            })
            .collect()),
        (Err(err), _) | (_, Err(err)) => Err(Failure::of(&err).message),
    };
    let session = &graph.session().server;
    let refresh_until = session.refreshed_at + 90 * 86_400;
    let tenant = organization.first().cloned().unwrap_or(Value::Null);
    let view = json!({
        "server": session.url,
        "session": graph.session().name,
        "user": me["userPrincipalName"],
        "displayName": me["displayName"],
        "id": me["id"],
        "tenant": {"id": tenant["id"], "displayName": tenant["displayName"], "name": session.tenant},
        "roles": roles.as_ref().ok(),
        "rolesError": roles.as_ref().err(),
        "signedInAt": unix_time(session.signed_in_at),
        "accessTokenExpiresAt": unix_time(session.access_expires_at),
        "sessionEndsAt": unix_time(refresh_until),
    });
    if output_args.format() == Format::Json {
        output::print_json(&view);
        return Ok(());
    }
    let mut rows = output::Rows::new(&[]);
    let mut line = |key: &str, value: String| rows.push(vec![key.to_owned(), value]);
    line("User", format!("{} ({})", output::cell(&me["userPrincipalName"]), output::cell(&me["displayName"])));
    line("Tenant", format!("{} ({})", output::cell(&tenant["displayName"]), session.tenant));
    line("Server", format!("{} (session '{}')", session.url, graph.session().name));
    line(
        "Roles",
        match &roles {
            Ok(roles) if roles.is_empty() => "none".into(),
            Ok(roles) => roles.join(", "),
            Err(why) => format!("cannot be read ({why})"),
        },
    );
    line("Signed in", unix_time(session.signed_in_at));
    line(
        "Session ends",
        format!(
            "{} at the latest if unused (each use renews it; sooner when signed in with a Temporary Access Pass, or \
             when revoked)",
            unix_time(refresh_until)
        ),
    );
    rows.print(output_args.format());
    Ok(())
}

/// The columns `--select` names (comma-separated), or `default`.
fn columns(select: Option<&str>, default: &[&str]) -> Vec<String> {
    match select {
        Some(select) => select.split(',').map(|it| it.trim().to_owned()).filter(|it| !it.is_empty()).collect(),
        None => default.iter().map(|it| (*it).to_owned()).collect(),
    }
}

pub async fn users(server: Option<&str>, command: UsersCommand) -> anyhow::Result<()> {
    let graph = Graph::connect(server).await?;
    match command {
        UsersCommand::List { filter, search, select, top, output: out } => {
            let columns = columns(select.as_deref(), &["displayName", "userPrincipalName", "accountEnabled", "id"]);
            let mut path =
                format!("/v1.0/users?$top={}&$select={}", top.unwrap_or(999).clamp(1, 999), encode(&columns.join(",")));
            if let Some(filter) = &filter {
                path.push_str(&format!("&$filter={}", encode(filter)));
            }
            if let Some(search) = &search {
                let search = if search.starts_with('"') { search.clone() } else { format!("\"{search}\"") };
                path.push_str(&format!("&$search={}", encode(&search)));
            }
            let users = graph.list(&path, top, search.is_some()).await?;
            let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
            output::show_objects(&users, &columns, out.format());
        }
        UsersCommand::Show { user, select, output: out } => {
            let select = select.unwrap_or_else(|| {
                "id,displayName,userPrincipalName,accountEnabled,mail,jobTitle,department,userType,createdDateTime"
                    .into()
            });
            let found = graph.user(&user, &encode(&select)).await?;
            output::show_object(&found, out.format());
        }
        UsersCommand::Create {
            upn,
            display_name,
            mail_nickname,
            password_stdin,
            no_password_change,
            disabled,
            output: out,
        } => {
            let (password, generated) = if password_stdin {
                let mut text = String::new();
                std::io::stdin().read_line(&mut text)?;
                (text.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (generate_password()?, true)
            };
            let nickname = mail_nickname.unwrap_or_else(|| upn.split('@').next().unwrap_or(&upn).to_owned());
            let body = json!({
                "userPrincipalName": upn,
                "displayName": display_name,
                "mailNickname": nickname,
                "accountEnabled": !disabled,
                "passwordProfile": {"password": password, "forceChangePasswordNextSignIn": !no_password_change},
            });
            let created = graph.post("/v1.0/users", &body).await?;
            if out.format() == Format::Json {
                output::print_json(&created);
            } else {
                output::print(&format!(
                    "Created {} ({}).",
                    output::cell(&created["userPrincipalName"]),
                    output::cell(&created["id"])
                ));
            }
            if generated {
                output::note(&format!(
                    "Initial password (shown once{}): {password}",
                    if no_password_change { "" } else { "; changed at first sign-in" }
                ));
            }
        }
        UsersCommand::Update { user, display_name, job_title, department, set } => {
            let mut body = serde_json::Map::new();
            for (key, value) in [("displayName", display_name), ("jobTitle", job_title), ("department", department)] {
                if let Some(value) = value {
                    body.insert(key.into(), Value::String(value));
                }
            }
            for pair in set {
                let (key, value) =
                    pair.split_once('=').ok_or_else(|| Failure::usage(format!("--set '{pair}' is not NAME=VALUE")))?;
                let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
                body.insert(key.trim().to_owned(), value);
            }
            if body.is_empty() {
                return Err(Failure::usage(
                    "nothing to change: give --display-name, --job-title, --department or --set NAME=VALUE",
                )
                .into());
            }
            let found = graph.user(&user, "id,userPrincipalName").await?;
            graph.patch(&format!("/v1.0/users/{}", id_segment(&found)), &Value::Object(body)).await?;
            output::print(&format!("Updated {}.", output::cell(&found["userPrincipalName"])));
        }
        UsersCommand::Disable { user } => set_enabled(&graph, &user, false).await?,
        UsersCommand::Enable { user } => set_enabled(&graph, &user, true).await?,
        UsersCommand::Delete { user, yes } => {
            let found = graph.user(&user, "id,userPrincipalName").await?;
            let upn = output::cell(&found["userPrincipalName"]);
            if !yes {
                confirm(&format!("Delete {upn}? It is kept 30 days in deleted items."), "Add --yes to confirm")?;
            }
            graph.delete(&format!("/v1.0/users/{}", id_segment(&found))).await?;
            output::print(&format!(
                "Deleted {upn} (restorable for 30 days: POST /v1.0/directory/deletedItems/{}/restore).",
                output::cell(&found["id"])
            ));
        }
    }
    Ok(())
}

async fn set_enabled(graph: &Graph, user: &str, enabled: bool) -> anyhow::Result<()> {
    let found = graph.user(user, "id,userPrincipalName").await?;
    graph.patch(&format!("/v1.0/users/{}", id_segment(&found)), &json!({"accountEnabled": enabled})).await?;
    output::print(&format!(
        "{} {}.",
        if enabled { "Enabled" } else { "Disabled" },
        output::cell(&found["userPrincipalName"])
    ));
    Ok(())
}

/// Asks `question` on a terminal; elsewhere refuses with `hint` (how to confirm without asking).
pub fn confirm(question: &str, hint: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!("{question} {hint}")).into());
    }
    let _ = write!(std::io::stderr(), "{} [y/N] ", output::printable(question));
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        Ok(())
    } else {
        Err(Failure::new(exit::FAILURE, "nothing was changed").into())
    }
}

/// A 20-character password from the system's random source.
fn generate_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0_u8; 20];
    crate::cli::getrandom_fill(&mut bytes)?;
    let body: String = bytes.iter().map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])).collect();
    // Entra's complexity: three of upper, lower, digit, symbol.
    Ok(format!("{body}-9a"))
}

/// A group by id or display name.
async fn group(graph: &Graph, key: &str) -> anyhow::Result<Value> {
    let select = "$select=id,displayName,description,securityEnabled,isAssignableToRole,groupTypes,mailNickname";
    if let Ok(found) = graph.get(&format!("/v1.0/groups/{}?{select}", encode(key))).await {
        return Ok(found);
    }
    let filter = format!("displayName eq {}", literal(key));
    let found = graph.list(&format!("/v1.0/groups?$filter={}&{select}", encode(&filter)), None, false).await?;
    match &found[..] {
        [one] => Ok(one.clone()),
        [] => Err(Failure::new(exit::NOT_FOUND, format!("there is no group '{key}'")).into()),
        _ => Err(Failure::usage(format!("several groups are named '{key}'; give its id")).into()),
    }
}

pub async fn groups(server: Option<&str>, command: GroupsCommand) -> anyhow::Result<()> {
    let graph = Graph::connect(server).await?;
    match command {
        GroupsCommand::List { filter, select, output: out } => {
            let columns = columns(select.as_deref(), &["displayName", "isAssignableToRole", "securityEnabled", "id"]);
            let mut path = format!("/v1.0/groups?$top=999&$select={}", encode(&columns.join(",")));
            if let Some(filter) = &filter {
                path.push_str(&format!("&$filter={}", encode(filter)));
            }
            let items = graph.list(&path, None, false).await?;
            output::show_objects(&items, &columns.iter().map(String::as_str).collect::<Vec<_>>(), out.format());
        }
        GroupsCommand::Show { group: key, output: out } => {
            output::show_object(&group(&graph, &key).await?, out.format())
        }
        GroupsCommand::Create { name, description, mail_nickname, role_assignable, output: out } => {
            let nickname = mail_nickname.unwrap_or_else(|| name.chars().filter(char::is_ascii_alphanumeric).collect());
            let mut body = json!({
                "displayName": name, "mailEnabled": false, "securityEnabled": true, "mailNickname": nickname,
                "isAssignableToRole": role_assignable,
            });
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            let created = graph.post("/v1.0/groups", &body).await?;
            if out.format() == Format::Json {
                output::print_json(&created);
            } else {
                output::print(&format!(
                    "Created group {} ({}).",
                    output::cell(&created["displayName"]),
                    output::cell(&created["id"])
                ));
            }
        }
        GroupsCommand::Delete { group: key, yes } => {
            let found = group(&graph, &key).await?;
            let name = output::cell(&found["displayName"]);
            if !yes {
                confirm(&format!("Delete the group {name}?"), "Add --yes to confirm")?;
            }
            graph.delete(&format!("/v1.0/groups/{}", id_segment(&found))).await?;
            output::print(&format!("Deleted the group {name}."));
        }
        GroupsCommand::Members { group: key, output: out } => {
            let found = group(&graph, &key).await?;
            let id = id_segment(&found);
            let members = graph.list(&format!("/v1.0/groups/{id}/members"), None, false).await?;
            output::show_objects(&members, &["displayName", "userPrincipalName", "id"], out.format());
        }
        GroupsCommand::AddMember { group: key, user } => {
            let found = group(&graph, &key).await?;
            let member = graph.user(&user, "id,userPrincipalName").await?;
            let reference =
                format!("{}/v1.0/directoryObjects/{}", graph.session().server.url, output::cell(&member["id"]));
            graph
                .post(&format!("/v1.0/groups/{}/members/$ref", id_segment(&found)), &json!({"@odata.id": reference}))
                .await?;
            output::print(&format!(
                "Added {} to {}.",
                output::cell(&member["userPrincipalName"]),
                output::cell(&found["displayName"])
            ));
        }
        GroupsCommand::RemoveMember { group: key, user } => {
            let found = group(&graph, &key).await?;
            let member = graph.user(&user, "id,userPrincipalName").await?;
            graph.delete(&format!("/v1.0/groups/{}/members/{}/$ref", id_segment(&found), id_segment(&member))).await?;
            output::print(&format!(
                "Removed {} from {}.",
                output::cell(&member["userPrincipalName"]),
                output::cell(&found["displayName"])
            ));
        }
    }
    Ok(())
}

pub async fn roles(server: Option<&str>, command: RolesCommand) -> anyhow::Result<()> {
    let graph = Graph::connect(server).await?;
    match command {
        RolesCommand::List { output: out } => {
            let items = graph.list("/v1.0/roleManagement/directory/roleDefinitions", None, false).await?;
            output::show_objects(&items, &["displayName", "isBuiltIn", "id"], out.format());
        }
        RolesCommand::Show { role, output: out } => {
            let definitions = graph.list("/v1.0/roleManagement/directory/roleDefinitions", None, false).await?;
            let (id, _) = bulk::resolve_role_in(&definitions, &role)?;
            let definition = definitions.iter().find(|it| it["id"] == id.as_str()).cloned().unwrap_or(Value::Null);
            let filter = format!("roleDefinitionId eq {}", literal(&id));
            let holders = graph
                .list(
                    &format!(
                        "/v1.0/roleManagement/directory/roleAssignments?$filter={}&$expand=principal",
                        encode(&filter)
                    ),
                    None,
                    false,
                )
                .await?;
            if out.format() == Format::Json {
                output::print_json(&json!({"definition": definition, "assignments": holders}));
                return Ok(());
            }
            let actions = definition["rolePermissions"][0]["allowedResourceActions"].as_array().map_or(0, Vec::len);
            output::print(&format!("{} ({})", output::cell(&definition["displayName"]), id));
            output::print(&format!(
                "{}\n{} allowed actions; held by {}:",
                output::cell(&definition["description"]),
                actions,
                holders.len()
            ));
            output::show_objects(
                &holders,
                &["principal.displayName", "principal.userPrincipalName", "directoryScopeId", "id"],
                out.format(),
            );
        }
        RolesCommand::Assignments { user, role, output: out } => {
            let mut filters = Vec::new();
            if let Some(user) = &user {
                let found = graph.user(user, "id").await?;
                filters.push(format!("principalId eq {}", literal(found["id"].as_str().unwrap_or_default())));
            }
            let definitions = graph.list("/v1.0/roleManagement/directory/roleDefinitions", None, false).await?;
            if let Some(role) = &role {
                let (id, _) = bulk::resolve_role_in(&definitions, role)?;
                filters.push(format!("roleDefinitionId eq {}", literal(&id)));
            }
            let mut path = "/v1.0/roleManagement/directory/roleAssignments?$expand=principal".to_owned();
            if !filters.is_empty() {
                path.push_str(&format!("&$filter={}", encode(&filters.join(" and "))));
            }
            let mut items = graph.list(&path, None, false).await?;
            for item in &mut items {
                let name = definitions
                    .iter()
                    .find(|it| it["id"] == item["roleDefinitionId"])
                    .map(|it| it["displayName"].clone())
                    .unwrap_or(Value::Null);
                item["roleDisplayName"] = name;
            }
            output::show_objects(
                &items,
                &["roleDisplayName", "principal.displayName", "principal.userPrincipalName", "directoryScopeId", "id"],
                out.format(),
            );
        }
        RolesCommand::Assign(args) => assign(&graph, Operation::AssignRole, args).await?,
        RolesCommand::Unassign(args) => assign(&graph, Operation::UnassignRole, args).await?,
        RolesCommand::Mine { output: out } => mine(&graph, out.format()).await?,
        RolesCommand::Activate { role, justification, hours, scope, ticket } => {
            let mut body = self_request(&graph, "selfActivate", &role, scope.as_deref()).await?;
            body["justification"] = json!(justification);
            body["scheduleInfo"] = json!({"expiration": {"type": "afterDuration", "duration": format!("PT{hours}H")}});
            if let Some(ticket) = ticket {
                body["ticketInfo"] = json!({"ticketNumber": ticket});
            }
            let answer = graph.post("/v1.0/roleManagement/directory/roleAssignmentScheduleRequests", &body).await?;
            if answer["status"] == "PendingApproval" {
                output::print(&format!(
                    "Requested: waiting for an approver (request {}).",
                    output::cell(&answer["id"])
                ));
            } else {
                output::print(&format!("Active for {hours} hour{}.", if hours == 1 { "" } else { "s" }));
            }
        }
        RolesCommand::Deactivate { role, scope } => {
            let mut body = self_request(&graph, "selfDeactivate", &role, scope.as_deref()).await?;
            body["justification"] = json!("Deactivated with keyward roles deactivate");
            graph.post("/v1.0/roleManagement/directory/roleAssignmentScheduleRequests", &body).await?;
            output::print("Deactivated.");
        }
        RolesCommand::Pending { output: out } => {
            let path =
                "/v1.0/roleManagement/directory/roleAssignmentScheduleRequests/filterByCurrentUser(on='approver')";
            let mut items = graph.list(path, None, false).await?;
            name_roles(&graph, &mut items).await?;
            output::show_objects(
                &items,
                &["id", "principalId", "roleDisplayName", "directoryScopeId", "justification", "createdDateTime"],
                out.format(),
            );
        }
        RolesCommand::Approve { request, justification } => review(&graph, &request, "Approve", &justification).await?,
        RolesCommand::Deny { request, justification } => review(&graph, &request, "Deny", &justification).await?,
    }
    Ok(())
}

/// A `selfActivate` or `selfDeactivate` request's body for the signed-in user.
async fn self_request(graph: &Graph, action: &str, role: &str, scope: Option<&str>) -> anyhow::Result<Value> {
    let me = graph.get("/v1.0/me?$select=id").await?;
    let definitions = graph.list("/v1.0/roleManagement/directory/roleDefinitions", None, false).await?;
    let (role_id, _) = bulk::resolve_role_in(&definitions, role)?;
    let scope = bulk::scope_id(graph, scope).await?;
    Ok(json!({"action": action, "principalId": me["id"], "roleDefinitionId": role_id, "directoryScopeId": scope}))
}

/// Adds `roleDisplayName` to items that carry a `roleDefinitionId`.
async fn name_roles(graph: &Graph, items: &mut [Value]) -> anyhow::Result<()> {
    let definitions = graph.list("/v1.0/roleManagement/directory/roleDefinitions", None, false).await?;
    for item in items {
        let name = definitions
            .iter()
            .find(|it| {
                it["id"].as_str().zip(item["roleDefinitionId"].as_str()).is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
            })
            .map_or(Value::Null, |it| it["displayName"].clone());
        item["roleDisplayName"] = name;
    }
    Ok(())
}

/// `keyward roles mine`: eligible, active and waiting, one table.
async fn mine(graph: &Graph, format: Format) -> anyhow::Result<()> {
    let base = "/v1.0/roleManagement/directory";
    let mut rows = Vec::new();
    for (path, state) in [
        (format!("{base}/roleEligibilityScheduleInstances/filterByCurrentUser(on='principal')"), "eligible"),
        (format!("{base}/roleAssignmentScheduleInstances/filterByCurrentUser(on='principal')"), "active"),
    ] {
        for mut item in graph.list(&path, None, false).await? {
            item["state"] =
                json!(if state == "active" && item["assignmentType"] == "Activated" { "activated" } else { state });
            rows.push(item);
        }
    }
    let requests = graph
        .list(&format!("{base}/roleAssignmentScheduleRequests/filterByCurrentUser(on='principal')"), None, false)
        .await?;
    for mut item in requests.into_iter().filter(|it| it["status"] == "PendingApproval") {
        item["state"] = json!("waiting for approval");
        rows.push(item);
    }
    name_roles(graph, &mut rows).await?;
    output::show_objects(&rows, &["roleDisplayName", "directoryScopeId", "state", "endDateTime"], format);
    Ok(())
}

/// Approves or denies an activation waiting for the signed-in user.
async fn review(graph: &Graph, request: &str, result: &str, justification: &str) -> anyhow::Result<()> {
    let id = encode(request.trim());
    let path = format!("/beta/roleManagement/directory/roleAssignmentApprovals/{id}/steps/{id}");
    graph.patch(&path, &json!({"reviewResult": result, "justification": justification})).await?;
    output::print(if result == "Approve" { "Approved: the role is active for the requester." } else { "Denied." });
    Ok(())
}

async fn assign(graph: &Graph, operation: Operation, args: AssignArgs) -> anyhow::Result<()> {
    let rows = bulk::rows(&args.users, &args.bulk)?;
    if args.bulk.from_csv.is_none() && args.role.is_none() {
        return Err(Failure::usage("give the role with --role NAME_OR_ID").into());
    }
    let defaults =
        Row { number: 0, user: String::new(), role: args.role.clone(), scope: args.scope.clone(), state: None };
    let is_single = args.bulk.from_csv.is_none() && rows.len() == 1;
    bulk::run(graph, operation, rows, &defaults, &args.bulk, is_single).await
}

pub async fn mfa(server: Option<&str>, command: MfaCommand) -> anyhow::Result<()> {
    let graph = Graph::connect(server).await?;
    let (operation, users, state) = match command {
        MfaCommand::Methods { user, output: out } => {
            let found = graph.user(&user, "id").await?;
            let methods =
                graph.list(&format!("/v1.0/users/{}/authentication/methods", id_segment(&found)), None, false).await?;
            if out.format() == Format::Json {
                output::print_json(&Value::Array(methods));
                return Ok(());
            }
            let mut rows = output::Rows::new(&["method", "details", "created", "id"]);
            for method in &methods {
                let kind = method["@odata.type"].as_str().unwrap_or_default().trim_start_matches("#microsoft.graph.");
                let kind = kind.trim_end_matches("AuthenticationMethod");
                let details = ["displayName", "phoneNumber", "emailAddress", "model", "methodUsabilityReason"]
                    .iter()
                    .filter_map(|key| method[*key].as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                rows.push(vec![
                    kind.to_owned(),
                    details,
                    output::cell(&method["createdDateTime"]),
                    output::cell(&method["id"]),
                ]);
            }
            rows.print(out.format());
            return Ok(());
        }
        MfaCommand::RequireReregistration(users) => (Operation::RequireReregistration, users, None),
        MfaCommand::RevokeMfaSessions(users) => (Operation::RevokeMfaSessions, users, None),
        MfaCommand::RevokeSessions(users) => (Operation::RevokeSessions, users, None),
        MfaCommand::Tap { command: TapCommand::Create { users, lifetime, once } } => {
            (Operation::CreatePass { lifetime_minutes: lifetime, is_usable_once: once }, users, None)
        }
        MfaCommand::PerUser { command: PerUserCommand::Set { users, state } } => {
            if users.bulk.from_csv.is_none() && state.is_none() {
                return Err(Failure::usage("give the state with --state disabled|enabled|enforced").into());
            }
            (Operation::SetPerUserMfa, users, state)
        }
        MfaCommand::Reset { users, with_tap, lifetime, once } => {
            (Operation::ResetMfa { pass: with_tap.then_some((lifetime, once)) }, users, None)
        }
    };
    let rows = bulk::rows(&users.users, &users.bulk)?;
    let defaults = Row { number: 0, user: String::new(), role: None, scope: None, state };
    let is_single = users.bulk.from_csv.is_none() && rows.len() == 1;
    bulk::run(&graph, operation, rows, &defaults, &users.bulk, is_single).await
}

/// `keyward audit list`: directory audit records as a table, optionally followed.
pub async fn audit_list(server: Option<&str>, args: AuditListArgs) -> anyhow::Result<()> {
    let graph = Graph::connect(server).await?;
    let mut filters = Vec::new();
    if let Some(user) = &args.user {
        filters.push(format!("targetResources/any(t: t/userPrincipalName eq {})", literal(user)));
    }
    if let Some(initiator) = &args.initiator {
        filters.push(format!("initiatedBy/user/userPrincipalName eq {}", literal(initiator)));
    }
    if let Some(activity) = &args.activity {
        filters.push(format!("activityDisplayName eq {}", literal(activity)));
    }
    let columns = ["activityDateTime", "activityDisplayName", "result", "initiatedBy", "targets", "id"];
    let shape = |record: &Value| {
        let initiator = record["initiatedBy"]["user"]["userPrincipalName"]
            .as_str()
            .or(record["initiatedBy"]["app"]["displayName"].as_str())
            .unwrap_or_default()
            .to_owned();
        let targets = record["targetResources"]
            .as_array()
            .map(|it| {
                it.iter()
                    .filter_map(|t| t["userPrincipalName"].as_str().or(t["displayName"].as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let mut row = record.clone();
        row["initiatedBy"] = json!(initiator);
        row["targets"] = json!(targets);
        row
    };
    follow_log(
        &graph,
        "/v1.0/auditLogs/directoryAudits",
        "activityDateTime",
        filters,
        args.since,
        args.top,
        args.follow,
        &args.output,
        &columns,
        &shape,
    )
    .await
}

pub async fn signins(server: Option<&str>, command: SigninsCommand) -> anyhow::Result<()> {
    let SigninsCommand::List { user, failures, since, top, follow, output: out } = command;
    let graph = Graph::connect(server).await?;
    let mut filters = Vec::new();
    if let Some(user) = &user {
        filters.push(format!("userPrincipalName eq {}", literal(user)));
    }
    if failures {
        filters.push("status/errorCode ne 0".to_owned());
    }
    let columns = ["createdDateTime", "userPrincipalName", "appDisplayName", "result", "ipAddress", "id"];
    let shape = |record: &Value| {
        let mut row = record.clone();
        let code = record["status"]["errorCode"].as_i64().unwrap_or(0);
        row["result"] = if code == 0 {
            json!("success")
        } else {
            json!(format!("{code}: {}", record["status"]["failureReason"].as_str().unwrap_or_default()))
        };
        row
    };
    follow_log(
        &graph,
        "/v1.0/auditLogs/signIns",
        "createdDateTime",
        filters,
        since,
        top,
        follow,
        &out,
        &columns,
        &shape,
    )
    .await
}

pub async fn notifications(server: Option<&str>, command: NotificationsCommand) -> anyhow::Result<()> {
    let NotificationsCommand::List { state, top, output: out } = command;
    let graph = Graph::connect(server).await?;
    let mut path = format!("/beta/keyward/notifications?$top={}", top.clamp(1, 999));
    if let Some(state) = &state {
        path.push_str(&format!("&$filter={}", encode(&format!("state eq {}", literal(state)))));
    }
    let items = graph.list(&path, Some(top), false).await?;
    let columns = ["createdDateTime", "kind", "recipient", "subject", "state", "attempts", "lastError", "id"];
    output::show_objects(&items, &columns, out.format());
    Ok(())
}

/// Lists a log newest first; with `follow`, then polls for newer records and prints them as they come.
#[allow(clippy::too_many_arguments)]
async fn follow_log(
    graph: &Graph,
    collection: &str,
    time_property: &str,
    filters: Vec<String>,
    since: Option<time::OffsetDateTime>,
    top: usize,
    follow: bool,
    out: &OutputArgs,
    columns: &[&str],
    shape: &dyn Fn(&Value) -> Value,
) -> anyhow::Result<()> {
    let query = |since: Option<String>| {
        let mut all = filters.clone();
        if let Some(since) = since {
            all.push(format!("{time_property} ge {since}"));
        }
        // Both logs come newest first.
        let mut path = format!("{collection}?$top={}", top.clamp(1, 999));
        if !all.is_empty() {
            path.push_str(&format!("&$filter={}", encode(&all.join(" and "))));
        }
        path
    };
    let format = out.format();
    let mut records = graph.list(&query(since.map(rfc3339)), Some(top), false).await?;
    // Returns false once standard output is gone (`… --follow | head`).
    let show = |records: &[Value], with_header: bool| -> bool {
        let shaped: Vec<Value> = records.iter().map(shape).collect();
        match format {
            Format::Json if follow => records.iter().all(|it| output::print(&it.to_string())),
            Format::Json => output::print_json(&Value::Array(records.to_vec())),
            _ => {
                let mut rows = output::objects(&shaped, columns);
                if !with_header {
                    rows.headers.clear();
                }
                rows.rows.is_empty() && !with_header || rows.print(format)
            }
        }
    };
    // Newest first on screen for a list; oldest first when following, like a log.
    if follow {
        records.reverse();
    }
    let is_open = show(&records, true);
    if !follow || !is_open {
        return Ok(());
    }
    // Records are asked for from a little before the newest one seen, since one written by a
    // request that started earlier can commit later; those already shown are skipped by id.
    const OVERLAP: time::Duration = time::Duration::minutes(2);
    let parse = |at: &str| time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok();
    let mut seen: HashMap<String, time::OffsetDateTime> = HashMap::new();
    let remember = |records: &[Value],
                    seen: &mut HashMap<String, time::OffsetDateTime>,
                    latest: &mut Option<time::OffsetDateTime>| {
        for it in records {
            let at = it[time_property].as_str().and_then(parse);
            if let (Some(id), Some(at)) = (it["id"].as_str(), at) {
                seen.insert(id.to_owned(), at);
                *latest = (*latest).max(Some(at));
            }
        }
    };
    let mut latest: Option<time::OffsetDateTime> = since;
    remember(&records, &mut seen, &mut latest);
    // What already exists in the window (beyond the --top shown) is not news: mark it seen.
    let from = latest.map(|at| rfc3339(at - OVERLAP));
    let existing = graph.list(&query(from), None, false).await?;
    remember(&existing, &mut seen, &mut latest);
    output::note("Following; Ctrl-C stops.");
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => return Err(Failure::silent(exit::INTERRUPTED).into()),
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
        let from = latest.map(|at| rfc3339(at - OVERLAP));
        let mut fresh = graph.list(&query(from), None, false).await?;
        fresh.retain(|it| it["id"].as_str().is_some_and(|id| !seen.contains_key(id)));
        fresh.reverse();
        remember(&fresh, &mut seen, &mut latest);
        if let Some(newest) = latest {
            seen.retain(|_, at| *at >= newest - OVERLAP * 2);
        }
        if !fresh.is_empty() && !show(&fresh, false) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_minutes() {
        assert_eq!(parse_minutes("90m"), Ok(90));
        assert_eq!(parse_minutes("1h"), Ok(60));
        assert_eq!(parse_minutes("2d"), Ok(2880));
        assert_eq!(parse_minutes("45"), Ok(45));
        assert!(parse_minutes("0h").is_err());
        assert!(parse_minutes("1w").is_err());
        assert!(parse_minutes("h").is_err());
        let week = parse_since("7d").expect("since");
        let expected = time::OffsetDateTime::now_utc() - time::Duration::days(7);
        assert!((week - expected).abs() < time::Duration::seconds(5));
        assert!(parse_since("2026-11-01").is_ok());
        assert!(parse_since("yesterday").is_err());
    }
}
