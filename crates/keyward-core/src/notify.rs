//! Telling users what happens to their account: which audited changes send the user a message,
//! what the message says, and when a failed delivery is tried again.
//!
//! A message is derived from the audit records of one change (so every path that changes security
//! info and is audited notifies, and nothing that is not audited does), written to the outbox in
//! the change's transaction, and delivered later. The "This wasn't me" link is made when the
//! message is sent; its text here holds [`LINK_PLACEHOLDER`].

use time::{Duration, OffsetDateTime};

use crate::audit::{Activity, AuditRecord, AuditResult, Initiator};
use crate::ids::ObjectId;

/// Where the "This wasn't me" link goes in a message's body until it is sent.
pub const LINK_PLACEHOLDER: &str = "{this-wasnt-me-link}";

/// How long a "This wasn't me" link works after the message is sent.
pub const LINK_LIFETIME: Duration = Duration::days(14);

/// How long delivery is retried before a message is given up as failed.
pub const GIVE_UP_AFTER: Duration = Duration::days(3);

/// How long one node holds a message it is sending before another node may try it.
pub const LEASE: Duration = Duration::minutes(2);

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// To a user: someone changed their security info, or they registered a method.
    SecurityInfoChanged,
    /// To administrators: a user used "This wasn't me".
    SuspiciousActivityReported,
    /// To administrators: an agent reached their hourly limit.
    AgentLimitReached,
    /// To administrators: dual control holds a change for a second administrator's approval.
    ApprovalRequested,
}

impl Kind {
    pub const ALL: [Kind; 4] =
        [Kind::SecurityInfoChanged, Kind::SuspiciousActivityReported, Kind::AgentLimitReached, Kind::ApprovalRequested];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SecurityInfoChanged => "securityInfoChanged",
            Kind::SuspiciousActivityReported => "suspiciousActivityReported",
            Kind::AgentLimitReached => "agentLimitReached",
            Kind::ApprovalRequested => "approvalRequested",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|it| it.as_str() == text)
    }
}

/// Where a message is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the relay (or for one to be configured).
    Pending,
    Sent,
    /// Given up after [`GIVE_UP_AFTER`], or refused by the relay for good.
    Failed,
    /// The user has no mail address: kept for administrators to see.
    NoAddress,
}

impl State {
    pub const ALL: [State; 4] = [State::Pending, State::Sent, State::Failed, State::NoAddress];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sent => "sent",
            State::Failed => "failed",
            State::NoAddress => "noAddress",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|it| it.as_str() == text)
    }
}

/// The one `$filter` a list of notifications takes: `state eq '<state>'`.
pub fn parse_state_filter(text: &str) -> Result<State, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let refused = || {
        let states: Vec<&str> = State::ALL.iter().map(|it| it.as_str()).collect();
        format!("Invalid filter clause: notifications take only $filter=state eq '<{}>'.", states.join("|"))
    };
    match words.as_slice() {
        [property, op, value] if property.eq_ignore_ascii_case("state") && op.eq_ignore_ascii_case("eq") => {
            value.strip_prefix('\'').and_then(|it| it.strip_suffix('\'')).and_then(State::parse).ok_or_else(refused)
        }
        _ => Err(refused()),
    }
}

/// One thing that happened to a user's security info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    MethodAdded,
    MethodChanged,
    MethodRemoved,
    PassCreated,
    PasswordReset,
    ReregistrationRequired,
    MfaSessionsRevoked,
    MfaRequirementChanged,
    SessionsRevoked,
    /// The account's `mail` changed: told at the old address too.
    MailChanged,
    /// The user registered a method themselves.
    MethodRegistered,
    /// The user changed their password themselves.
    PasswordChanged,
}

impl Event {
    /// The line of the message that tells it.
    pub fn sentence(self) -> &'static str {
        match self {
            Event::MethodAdded => "A sign-in method was added to your account.",
            Event::MethodChanged => "One of your sign-in methods was changed.",
            Event::MethodRemoved => "One of your sign-in methods was removed.",
            Event::PassCreated => "A Temporary Access Pass was created for your account.",
            Event::PasswordReset => "Your password was reset.",
            Event::ReregistrationRequired => {
                "Your authenticator apps and phone numbers were removed: you will set up MFA again at your next sign-in."
            }
            Event::MfaSessionsRevoked => "Your remembered devices were forgotten: your next sign-in asks for MFA.",
            Event::MfaRequirementChanged => "Whether your account requires MFA was changed.",
            Event::SessionsRevoked => "You were signed out of every session and app.",
            Event::MailChanged => {
                "The e-mail address of your account was changed (this message also goes to the old address)."
            }
            Event::MethodRegistered => "You registered a new sign-in method.",
            Event::PasswordChanged => "You changed your password.",
        }
    }

    /// Whether the user did it themselves.
    fn is_own(self) -> bool {
        matches!(self, Event::MethodRegistered | Event::PasswordChanged)
    }
}

/// A message due to one user for one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub tenant_id: ObjectId,
    pub user_id: ObjectId,
    pub correlation_id: String,
    pub at: OffsetDateTime,
    /// Who did it, when it was someone else: their name (or the application's).
    pub by: Option<String>,
    /// In a stable order, each once.
    pub events: Vec<Event>,
    /// The user's `mail` before this change, when the change replaced it: the message goes there
    /// too, so an agent cannot redirect a user's warnings to themselves first.
    pub previous_mail: Option<String>,
}

/// The messages the audit records of one change call for: one per user the change is about.
/// Only successful records count; a user's own changes count only when they add a method or
/// change the password.
pub fn notices(records: &[AuditRecord]) -> Vec<Notice> {
    let mut res: Vec<Notice> = Vec::new();
    for record in records {
        let Some((user, events, previous_mail)) = events_of(record) else { continue };
        let by = match &record.initiated_by {
            Initiator::User { id, .. } if *id == user => None,
            Initiator::User { display_name, .. } => Some(clean(display_name)),
            Initiator::App { display_name, .. } => Some(clean(display_name)),
        };
        let events: Vec<Event> = events.into_iter().filter(|it| by.is_none() == it.is_own()).collect();
        if events.is_empty() {
            continue;
        }
        let previous_mail = previous_mail.filter(|_| by.is_some());
        let index = match res.iter().position(|it| it.user_id == user && it.correlation_id == record.correlation_id) {
            Some(index) => index,
            None => {
                res.push(Notice {
                    tenant_id: record.tenant_id.clone(),
                    user_id: user,
                    correlation_id: record.correlation_id.clone(),
                    at: record.activity_date_time,
                    by,
                    events: Vec::new(),
                    previous_mail: None,
                });
                res.len() - 1
            }
        };
        let notice = &mut res[index];
        for event in events {
            if !notice.events.contains(&event) {
                notice.events.push(event);
            }
        }
        notice.events.sort();
        if previous_mail.is_some() {
            notice.previous_mail = previous_mail;
        }
    }
    res
}

/// The user a record is about, what it tells them, and the `mail` it replaced, if any.
fn events_of(record: &AuditRecord) -> Option<(ObjectId, Vec<Event>, Option<String>)> {
    if record.result != AuditResult::Success {
        return None;
    }
    let target = record.target_resources.iter().find(|it| it.kind == "User")?;
    let name = record.activity_display_name.as_str();
    let is = |activity: Activity| activity.display_name() == name;
    let event = if is(Activity::AdminRegisteredSecurityInfo) {
        if record.result_reason.to_ascii_lowercase().contains("temporary access pass") {
            Event::PassCreated
        } else {
            Event::MethodAdded
        }
    } else if is(Activity::AdminUpdatedSecurityInfo) {
        Event::MethodChanged
    } else if is(Activity::AdminDeletedSecurityInfo) {
        Event::MethodRemoved
    } else if is(Activity::ResetPasswordByAdmin) {
        Event::PasswordReset
    } else if is(Activity::UpdateStsRefreshTokenValidFrom) {
        Event::SessionsRevoked
    } else if is(Activity::EnableStrongAuthentication) || is(Activity::DisableStrongAuthentication) {
        Event::MfaRequirementChanged
    } else if is(Activity::UserRegisteredSecurityInfo) {
        Event::MethodRegistered
    } else if is(Activity::ChangePasswordSelfService) {
        Event::PasswordChanged
    } else if is(Activity::UpdateUser) {
        let (events, previous_mail) = user_update_events(target);
        return (!events.is_empty()).then(|| (target.id.clone(), events, previous_mail));
    } else {
        return None;
    };
    Some((target.id.clone(), vec![event], None))
}

/// `Update user` records that touch security info: the MFA methods removed ("require
/// re-register MFA"), the remembered devices' cut-off moved ("revoke MFA sessions"), a password
/// set (`passwordProfile`), or the `mail` replaced (with the old address).
fn user_update_events(target: &crate::audit::TargetResource) -> (Vec<Event>, Option<String>) {
    let changed = |name: &str| target.modified_properties.iter().find(|it| it.name == name);
    let mut events = Vec::new();
    if changed("StrongAuthenticationMethod").is_some() {
        events.push(Event::ReregistrationRequired);
    }
    if let Some(requirement) = changed("StrongAuthenticationRequirement") {
        let field = |value: &Option<String>| {
            value.as_deref().and_then(|it| it.split("\"RememberDevicesNotIssuedBefore\":").nth(1)).map(str::to_owned)
        };
        if field(&requirement.old_value) != field(&requirement.new_value) {
            events.push(Event::MfaSessionsRevoked);
        }
    }
    if changed("PasswordProfile").is_some() {
        events.push(Event::PasswordReset);
    }
    let mut previous_mail = None;
    // A first address set is no redirection; one replaced or removed is.
    if let Some(mail) = changed("Mail") {
        previous_mail = mail
            .old_value
            .as_deref()
            .and_then(|it| it.strip_prefix("[\"")?.strip_suffix("\"]").map(str::to_owned))
            .filter(|it| !it.is_empty() && !it.contains('"'));
        if previous_mail.is_some() {
            events.push(Event::MailChanged);
        }
    }
    (events, previous_mail)
}

/// A name as a message shows it: one line, no control characters, at most 100 characters (a
/// display name cannot add lines of its own to a message).
fn clean(name: &str) -> String {
    // Control characters, Unicode line and paragraph separators, and the bidirectional controls
    // (which can make a name read backwards) all become spaces.
    let unsafe_char = |it: char| {
        it.is_control()
            || matches!(it, '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}')
            || ('\u{202a}'..='\u{202e}').contains(&it)
            || ('\u{2066}'..='\u{2069}').contains(&it)
    };
    let one_line: String = name.chars().map(|it| if unsafe_char(it) { ' ' } else { it }).take(100).collect();
    one_line.trim().to_owned()
}

/// A message's subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: String,
}

/// What the user is sent: what happened, by whom, and the "This wasn't me" link
/// ([`LINK_PLACEHOLDER`]).
pub fn security_message(tenant: &str, user_name: &str, account: &str, notice: &Notice) -> Message {
    let (tenant, user_name, account) = (&clean(tenant), &clean(user_name), &clean(account));
    let when = format_time(notice.at);
    let who = match &notice.by {
        Some(name) => format!("{name}, an administrator of {tenant}, changed"),
        None => "There was a change to".to_owned(),
    };
    let mut body = format!("Hello {user_name},\n\n{who} the security info of your account {account} on {when}:\n\n");
    for event in &notice.events {
        body.push_str("- ");
        body.push_str(event.sentence());
        body.push('\n');
    }
    body.push_str(concat!(
        "\nIf you or your service desk did this, there is nothing to do.\n\n",
        "If this wasn't you, open this link: it signs you out everywhere, cancels any Temporary Access ",
        "Pass and tells your administrators. It works once, for 14 days.\n\n",
    ));
    body.push_str(LINK_PLACEHOLDER);
    body.push_str("\n\nThis message was sent automatically; replies are not read.\n");
    let subject = if notice.by.is_some() {
        format!("{tenant}: your security info was changed")
    } else {
        format!("{tenant}: your security info changed")
    };
    Message { subject, body }
}

/// What administrators are sent when a user reports a change they did not make.
pub fn suspicious_activity_message(tenant: &str, user_name: &str, account: &str, at: OffsetDateTime) -> Message {
    let (tenant, user_name, account) = (&clean(tenant), &clean(user_name), &clean(account));
    Message {
        subject: format!("{tenant}: {user_name} reported suspicious activity"),
        body: format!(
            concat!(
                "{user} ({account}) reported on {when} that a change to their security info was not them ",
                "(\"This wasn't me\").\n\nKeyward signed them out everywhere and removed their Temporary ",
                "Access Pass, if they had one. Look at the audit log for what changed and who did it ",
                "(activity \"User reported suspicious activity\"), and call the user on a number you ",
                "already know.\n"
            ),
            user = user_name,
            account = account,
            when = format_time(at),
        ),
    }
}

/// What administrators are sent when an agent reaches their hourly limit.
pub fn agent_limit_message(tenant: &str, agent: &str, refusal: &str, at: OffsetDateTime) -> Message {
    let (tenant, agent) = (&clean(tenant), &clean(agent));
    Message {
        subject: format!("{tenant}: {agent} reached the service desk's hourly limit"),
        body: format!(
            concat!(
                "On {when}, Keyward refused an operation by {agent}: {refusal}\n\nIf this agent is not ",
                "working through an unusual number of calls, their account may be compromised: revoke ",
                "their sessions and look at the audit log.\n"
            ),
            when = format_time(at),
            agent = agent,
            refusal = refusal,
        ),
    }
}

/// What administrators are sent when dual control holds a change: who asked, what, for whom,
/// until when, and where to decide.
pub fn approval_message(
    tenant: &str,
    requester: &str,
    change: &str,
    target: &str,
    expires: OffsetDateTime,
    where_to_decide: &str,
) -> Message {
    let (tenant, requester, target) = (&clean(tenant), &clean(requester), &clean(target));
    Message {
        subject: format!("{tenant}: {requester} asks for approval to change {target}'s sign-in"),
        body: format!(
            concat!(
                "{requester} asked for this change, which needs a second administrator: {change} for {target}.\n\n",
                "Approve it only if you know the request is genuine (for example, you called the user back on a ",
                "number you already had). Decide at {url} before {expires}; after that it expires and nothing ",
                "changes.\n"
            ),
            requester = requester,
            change = change,
            target = target,
            url = where_to_decide,
            expires = format_time(expires),
        ),
    }
}

/// When a message that failed `attempts` times is tried again: 5 seconds after the first
/// failure, doubling to at most 30 minutes.
pub fn retry_at(attempts: u32, now: OffsetDateTime) -> OffsetDateTime {
    let seconds = 5_i64.saturating_mul(1_i64 << attempts.saturating_sub(1).min(20));
    now + Duration::seconds(seconds.min(30 * 60))
}

/// A time as messages show it: `2026-12-03 18:40 UTC`.
fn format_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", at.year(), u8::from(at.month()), at.day(), at.hour(), at.minute())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditContext, TargetResource};
    use crate::directory::PropertyChange;

    fn user_target(id: &str) -> TargetResource {
        TargetResource {
            id: ObjectId::parse(id).expect("id"),
            display_name: Some("Adele".into()),
            kind: "User",
            user_principal_name: Some("adele@contoso.test".into()),
            modified_properties: Vec::new(),
        }
    }

    const ADELE: &str = "00000000-0000-0000-0000-00000000000a";
    const SAM: &str = "00000000-0000-0000-0000-00000000000b";

    fn context(initiator: &str) -> AuditContext {
        AuditContext {
            tenant_id: ObjectId::parse("00000000-0000-0000-0000-000000000001").expect("id"),
            correlation_id: "c1".into(),
            at: OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time"),
            initiated_by: Initiator::User {
                id: ObjectId::parse(initiator).expect("id"),
                display_name: "Sam".into(),
                user_principal_name: "sam@contoso.test".into(),
                ip_address: None,
            },
        }
    }

    #[test]
    fn one_change_by_an_agent_is_one_message_with_each_step() {
        let ctx = context(SAM);
        let mut pass = ctx.success("1".into(), Activity::AdminRegisteredSecurityInfo, vec![user_target(ADELE)]);
        pass.result_reason = "Admin registered temporary access pass method for user".into();
        let methods = ctx.success(
            "2".into(),
            Activity::UpdateUser,
            vec![user_target(ADELE).with_changes(vec![PropertyChange::new("StrongAuthenticationMethod", "[1]", "[]")])],
        );
        let devices = ctx.success(
            "3".into(),
            Activity::UpdateUser,
            vec![user_target(ADELE).with_changes(vec![PropertyChange::new(
                "StrongAuthenticationRequirement",
                "[]",
                "[{\"RelyingParty\":\"*\",\"State\":\"Disabled\",\"RememberDevicesNotIssuedBefore\":\"2027\"}]",
            )])],
        );
        let sessions = ctx.success("4".into(), Activity::UpdateStsRefreshTokenValidFrom, vec![user_target(ADELE)]);
        let again = ctx.success("5".into(), Activity::UpdateStsRefreshTokenValidFrom, vec![user_target(ADELE)]);
        let found = notices(&[pass, methods, devices, sessions, again]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].by.as_deref(), Some("Sam"));
        assert_eq!(
            found[0].events,
            vec![Event::PassCreated, Event::ReregistrationRequired, Event::MfaSessionsRevoked, Event::SessionsRevoked]
        );
        let message = security_message("Contoso", "Adele", "adele@contoso.test", &found[0]);
        assert!(message.body.contains("Sam, an administrator of Contoso, changed"), "{}", message.body);
        assert!(message.body.contains(Event::PassCreated.sentence()));
        assert!(message.body.contains(LINK_PLACEHOLDER));
    }

    #[test]
    fn failures_unrelated_records_and_own_housekeeping_send_nothing() {
        let ctx = context(SAM);
        let failed = ctx.failure("1".into(), Activity::ResetPasswordByAdmin, vec![user_target(ADELE)], "no");
        let other = ctx.success("2".into(), Activity::UpdateUser, vec![user_target(ADELE)]);
        let role = ctx.success("3".into(), Activity::AddMemberToRole, vec![user_target(ADELE)]);
        assert!(notices(&[failed, other, role]).is_empty());
        // A user signing themselves out everywhere is not told about it.
        let own =
            context(ADELE).success("4".into(), Activity::UpdateStsRefreshTokenValidFrom, vec![user_target(ADELE)]);
        assert!(notices(&[own]).is_empty());
        // Per-user MFA's state changing without the devices' cut-off is not "MFA sessions revoked".
        let state = ctx.success(
            "5".into(),
            Activity::UpdateUser,
            vec![user_target(ADELE).with_changes(vec![PropertyChange::new(
                "StrongAuthenticationRequirement",
                "[{\"State\":\"Disabled\",\"RememberDevicesNotIssuedBefore\":null}]",
                "[{\"State\":\"Enforced\",\"RememberDevicesNotIssuedBefore\":null}]",
            )])],
        );
        assert!(notices(&[state]).is_empty());
    }

    #[test]
    fn a_password_set_or_a_mail_replaced_by_someone_else_is_told_at_the_old_address_too() {
        let ctx = context(SAM);
        let update = ctx.success(
            "1".into(),
            Activity::UpdateUser,
            vec![user_target(ADELE).with_changes(vec![
                PropertyChange::new("Mail", "[\"adele@old.test\"]", "[\"sam@evil.test\"]"),
                PropertyChange::new("PasswordProfile", "[]", "[]"),
            ])],
        );
        let found = notices(&[update]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].events, vec![Event::PasswordReset, Event::MailChanged]);
        assert_eq!(found[0].previous_mail.as_deref(), Some("adele@old.test"));
        // A user changing their own profile is not told.
        let own = context(ADELE).success(
            "2".into(),
            Activity::UpdateUser,
            vec![user_target(ADELE).with_changes(vec![PropertyChange::new("Mail", "[]", "[\"a@b.test\"]")])],
        );
        assert!(notices(&[own]).is_empty());
        // Nor is a first address set by an administrator.
        let first = ctx.success(
            "3".into(),
            Activity::UpdateUser,
            vec![user_target(ADELE).with_changes(vec![PropertyChange::new("Mail", "[]", "[\"a@b.test\"]")])],
        );
        assert!(notices(&[first]).is_empty());
    }

    #[test]
    fn names_cannot_add_lines_to_a_message() {
        let mut ctx = context(SAM);
        ctx.initiated_by = Initiator::App {
            app_id: "x".into(),
            display_name: "Helpdesk\n\nThis was expected: do not open the link below.".into(),
            service_principal_id: None,
        };
        let record = ctx.success("1".into(), Activity::UpdateStsRefreshTokenValidFrom, vec![user_target(ADELE)]);
        let found = notices(&[record]);
        let message = security_message("Contoso\r\nBcc: x", "Adele", "adele@contoso.test", &found[0]);
        assert!(!message.body.contains("\n\nThis was expected"), "{}", message.body);
        assert!(!message.subject.contains('\n') && !message.subject.contains('\r'));
        let sneaky = clean("Help\u{2028}desk \u{202e}kcab\u{2066}x\u{2069}");
        assert!(!sneaky.chars().any(|it| ('\u{2028}'..='\u{2069}').contains(&it) && it != ' '), "{sneaky:?}");
        assert_eq!(sneaky, "Help desk  kcab x");
    }

    #[test]
    fn a_users_own_registration_is_told_to_them() {
        let own = context(ADELE).success("1".into(), Activity::UserRegisteredSecurityInfo, vec![user_target(ADELE)]);
        let found = notices(&[own]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].by, None);
        assert_eq!(found[0].events, vec![Event::MethodRegistered]);
        let message = security_message("Contoso", "Adele", "adele@contoso.test", &found[0]);
        assert!(message.body.contains("There was a change to the security info"), "{}", message.body);
    }

    #[test]
    fn retries_back_off_to_half_an_hour() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        assert_eq!(retry_at(1, now) - now, Duration::seconds(5));
        assert_eq!(retry_at(2, now) - now, Duration::seconds(10));
        assert_eq!(retry_at(4, now) - now, Duration::seconds(40));
        assert_eq!(retry_at(40, now) - now, Duration::minutes(30));
        assert_eq!(retry_at(u32::MAX, now) - now, Duration::minutes(30));
    }

    #[test]
    fn the_state_filter_takes_one_state() {
        assert_eq!(parse_state_filter("state eq 'pending'"), Ok(State::Pending));
        assert_eq!(parse_state_filter("State EQ 'noAddress'"), Ok(State::NoAddress));
        for bad in
            ["", "state eq pending", "state ne 'sent'", "state eq 'lost'", "kind eq 'sent'", "state eq 'sent' or 1"]
        {
            assert!(parse_state_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_and_states_read_back() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(
            format_time(OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")),
            "2027-01-15 08:00 UTC"
        );
    }
}
