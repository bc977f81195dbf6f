//! Just-in-time roles (Privileged Identity Management): eligibility, activation and the role
//! settings that govern them, decided without I/O.
//!
//! An eligibility lets a principal *activate* a role for a while; an activation is a role
//! assignment with an end. Every function here takes the time it decides at, so the same request
//! is decided the same way on every node.

use time::{Duration, OffsetDateTime};

use crate::ids::ObjectId;

/// How long a sign-in's multi-factor authentication counts for an activation that requires MFA:
/// the same "recent MFA" Keyward asks before changes to one's own security info.
pub const ACTIVATION_MFA_WINDOW: Duration = Duration::minutes(10);

/// A request's `scheduleInfo.expiration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    /// `notSpecified`, or no `expiration` at all: the longest the role's settings allow.
    NotSpecified,
    NoExpiration,
    AfterDateTime(OffsetDateTime),
    AfterDuration(Duration),
}

/// A request's `scheduleInfo`: when it starts (`None`: now) and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleInfo {
    pub start: Option<OffsetDateTime>,
    pub expiration: Expiration,
}

impl Default for ScheduleInfo {
    fn default() -> ScheduleInfo {
        ScheduleInfo { start: None, expiration: Expiration::NotSpecified }
    }
}

/// When an eligibility or an assignment holds: from `start`, until `end` (exclusive; `None`: for
/// good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: OffsetDateTime,
    pub end: Option<OffsetDateTime>,
}

impl Window {
    /// Whether the window holds at `at`.
    pub fn holds_at(&self, at: OffsetDateTime) -> bool {
        self.start <= at && self.end.is_none_or(|end| at < end)
    }

    /// Whether this window lies wholly inside `outer`.
    pub fn is_within(&self, outer: &Window) -> bool {
        outer.start <= self.start
            && match (self.end, outer.end) {
                (_, None) => true,
                (Some(end), Some(outer_end)) => end <= outer_end,
                (None, Some(_)) => false,
            }
    }

    /// Whether the window is over by `at`.
    pub fn has_ended_by(&self, at: OffsetDateTime) -> bool {
        self.end.is_some_and(|end| end <= at)
    }
}

/// A role setting's rule that a request failed, named as Entra names it in
/// `RoleAssignmentRequestPolicyValidationFailed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyRule {
    /// No eligibility covers the role, scope and time asked for.
    Eligibility,
    /// The duration is longer than the role's settings allow, or missing where one is required.
    Expiration,
    Justification,
    Mfa,
    Ticketing,
}

impl PolicyRule {
    pub fn name(self) -> &'static str {
        match self {
            PolicyRule::Eligibility => "EligibilityRule",
            PolicyRule::Expiration => "ExpirationRule",
            PolicyRule::Justification => "JustificationRule",
            PolicyRule::Mfa => "MfaRule",
            PolicyRule::Ticketing => "TicketingRule",
        }
    }
}

/// Graph's message for failed rules: `The following policy rules failed: ["MfaRule"]`, with a
/// sentence on what to do for each.
pub fn policy_failure_message(rules: &[PolicyRule]) -> String {
    let names: Vec<String> = rules.iter().map(|it| format!("\"{}\"", it.name())).collect();
    let mut res = format!("The following policy rules failed: [{}]", names.join(","));
    for rule in rules {
        res.push_str(match rule {
            PolicyRule::Eligibility => {
                ". No eligible assignment of this role at this scope covers the requested time: ask a Privileged \
                 Role Administrator to make you eligible"
            }
            PolicyRule::Expiration => {
                ". The requested duration is missing or longer than the role's settings allow: ask for a shorter \
                 duration"
            }
            PolicyRule::Justification => ". The role's settings require a justification: send one",
            PolicyRule::Mfa => {
                ". The role's settings require multi-factor authentication within the last 10 minutes: sign in \
                 again with your second factor and retry with the new token"
            }
            PolicyRule::Ticketing => ". The role's settings require ticket information: send ticketInfo",
        });
    }
    res.push('.');
    res
}

/// The settings of one role (its role management policy), with Entra's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSettings {
    /// `Expiration_EndUser_Assignment.maximumDuration`: the longest activation.
    pub activation_maximum: Duration,
    /// `Enablement_EndUser_Assignment.enabledRules` contains `MultiFactorAuthentication`.
    pub activation_requires_mfa: bool,
    /// … contains `Justification`.
    pub activation_requires_justification: bool,
    /// … contains `Ticketing`.
    pub activation_requires_ticket: bool,
    /// `Approval_EndUser_Assignment.setting.isApprovalRequired`.
    pub approval_required: bool,
    /// `Approval_EndUser_Assignment`'s primary approvers (users).
    pub approvers: Vec<ObjectId>,
    /// `Expiration_Admin_Eligibility.isExpirationRequired` (false: permanent eligibility allowed).
    pub eligibility_expiration_required: bool,
    /// `Expiration_Admin_Eligibility.maximumDuration`.
    pub eligibility_maximum: Duration,
    /// `Expiration_Admin_Assignment.isExpirationRequired` (false: permanent active assignments allowed).
    pub assignment_expiration_required: bool,
    /// `Expiration_Admin_Assignment.maximumDuration`.
    pub assignment_maximum: Duration,
    /// `Enablement_Admin_Assignment.enabledRules` contains `Justification`.
    pub assignment_requires_justification: bool,
}

impl Default for RoleSettings {
    /// Entra's defaults for every built-in role: activations of at most 8 hours with MFA and a
    /// justification, no approval, permanent eligibility allowed (365 days otherwise), permanent
    /// active assignments allowed (180 days otherwise) with a justification.
    fn default() -> RoleSettings {
        RoleSettings {
            activation_maximum: Duration::hours(8),
            activation_requires_mfa: true,
            activation_requires_justification: true,
            activation_requires_ticket: false,
            approval_required: false,
            approvers: Vec::new(),
            eligibility_expiration_required: false,
            eligibility_maximum: Duration::days(365),
            assignment_expiration_required: false,
            assignment_maximum: Duration::days(180),
            assignment_requires_justification: true,
        }
    }
}

/// A change to one rule of a role's settings, as `PATCH …/rules/{id}` asks for it; `None` keeps
/// what the settings hold when the change is applied (in the writing transaction, so two
/// administrators changing different parts of a rule both keep their change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleChange {
    /// `Expiration_EndUser_Assignment`: the longest activation.
    ActivationExpiration { maximum: Option<Duration> },
    /// `Enablement_EndUser_Assignment`: what an activation must carry.
    ActivationEnablement { mfa: bool, justification: bool, ticket: bool },
    /// `Approval_EndUser_Assignment`: whether an activation waits for an approver, and who.
    Approval { required: Option<bool>, approvers: Option<Vec<ObjectId>> },
    /// `Expiration_Admin_Eligibility`.
    EligibilityExpiration { required: Option<bool>, maximum: Option<Duration> },
    /// `Expiration_Admin_Assignment`.
    AssignmentExpiration { required: Option<bool>, maximum: Option<Duration> },
    /// `Enablement_Admin_Assignment`: whether an administrator's active assignment needs a justification.
    AssignmentEnablement { justification: bool },
}

impl RoleSettings {
    /// Applies a rule change, or says why it cannot hold.
    pub fn apply(&mut self, change: RuleChange) -> Result<(), String> {
        let within = |value: Duration, low: Duration, high: Duration, what: &str| {
            if value < low || value > high {
                Err(format!("The {what} must be between {} and {}.", format_duration(low), format_duration(high)))
            } else {
                Ok(())
            }
        };
        match change {
            RuleChange::ActivationExpiration { maximum } => {
                let maximum = maximum.unwrap_or(self.activation_maximum);
                within(maximum, Duration::minutes(30), MAXIMUM_ACTIVATION, "maximum activation duration")?;
                self.activation_maximum = maximum;
            }
            RuleChange::ActivationEnablement { mfa, justification, ticket } => {
                self.activation_requires_mfa = mfa;
                self.activation_requires_justification = justification;
                self.activation_requires_ticket = ticket;
            }
            RuleChange::Approval { required, approvers } => {
                let required = required.unwrap_or(self.approval_required);
                let approvers = approvers.unwrap_or_else(|| self.approvers.clone());
                if approvers.len() > 50 {
                    return Err("A role has at most 50 approvers.".into());
                }
                self.approval_required = required;
                self.approvers = approvers;
            }
            RuleChange::EligibilityExpiration { required, maximum } => {
                let required = required.unwrap_or(self.eligibility_expiration_required);
                let maximum = maximum.unwrap_or(self.eligibility_maximum);
                within(maximum, Duration::days(1), Duration::days(3650), "maximum eligibility duration")?;
                self.eligibility_expiration_required = required;
                self.eligibility_maximum = maximum;
            }
            RuleChange::AssignmentExpiration { required, maximum } => {
                let required = required.unwrap_or(self.assignment_expiration_required);
                let maximum = maximum.unwrap_or(self.assignment_maximum);
                within(maximum, Duration::days(1), Duration::days(3650), "maximum active assignment duration")?;
                self.assignment_expiration_required = required;
                self.assignment_maximum = maximum;
            }
            RuleChange::AssignmentEnablement { justification } => {
                self.assignment_requires_justification = justification
            }
        }
        Ok(())
    }
}

/// The longest activation a role's settings may allow (Entra: 24 hours).
pub const MAXIMUM_ACTIVATION: Duration = Duration::hours(24);

/// What an activation request carries besides its schedule.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivationProof<'a> {
    pub justification: Option<&'a str>,
    pub has_ticket: bool,
    /// When the caller last completed multi-factor authentication, if their token says so.
    pub mfa_at: Option<OffsetDateTime>,
}

/// The window a schedule asks for, from `now`: a start in the past means now; `NotSpecified`
/// means `maximum`. `Err` when it asks for no end although one is required, or for longer than
/// `maximum`, or ends before it starts.
fn requested_window(
    schedule: &ScheduleInfo,
    now: OffsetDateTime,
    expiration_required: bool,
    maximum: Duration,
) -> Result<Window, PolicyRule> {
    let start = schedule.start.map_or(now, |it| it.max(now));
    // Checked: a start near the end of time would overflow (such a request is only refused).
    let after = |duration: Duration| start.checked_add(duration).ok_or(PolicyRule::Expiration);
    let end = match schedule.expiration {
        Expiration::NotSpecified if expiration_required => Some(after(maximum)?),
        Expiration::NotSpecified | Expiration::NoExpiration if !expiration_required => None,
        Expiration::NotSpecified | Expiration::NoExpiration => return Err(PolicyRule::Expiration),
        Expiration::AfterDateTime(end) => Some(end),
        Expiration::AfterDuration(duration) => Some(after(duration)?),
    };
    match end {
        Some(end) if end <= start => Err(PolicyRule::Expiration),
        Some(end) if expiration_required && end - start > maximum => Err(PolicyRule::Expiration),
        _ => Ok(Window { start, end }),
    }
}

/// Decides a `selfActivate`: the activation's window and the index of the eligibility it uses,
/// or every rule it fails. The activation never outlives the eligibility it uses.
pub fn decide_activation(
    settings: &RoleSettings,
    eligibilities: &[Window],
    schedule: &ScheduleInfo,
    proof: &ActivationProof<'_>,
    now: OffsetDateTime,
) -> Result<(Window, usize), Vec<PolicyRule>> {
    let mut failed = Vec::new();
    let maximum = settings.activation_maximum.min(MAXIMUM_ACTIVATION);
    let requested = requested_window(schedule, now, true, maximum).map_err(|rule| failed.push(rule)).ok();
    let covering = requested.and_then(|requested| {
        eligibilities
            .iter()
            .enumerate()
            .filter(|(_, it)| it.holds_at(requested.start))
            .max_by_key(|(_, it)| it.end.map_or((1, OffsetDateTime::UNIX_EPOCH), |end| (0, end)))
    });
    if requested.is_some() && covering.is_none() {
        failed.push(PolicyRule::Eligibility);
    }
    if settings.activation_requires_justification && proof.justification.is_none_or(|it| it.trim().is_empty()) {
        failed.push(PolicyRule::Justification);
    }
    if settings.activation_requires_ticket && !proof.has_ticket {
        failed.push(PolicyRule::Ticketing);
    }
    // A token from a node whose clock runs a little ahead still counts.
    let skew = Duration::minutes(5);
    if settings.activation_requires_mfa
        && proof.mfa_at.is_none_or(|at| now - at > ACTIVATION_MFA_WINDOW || at > now + skew)
    {
        failed.push(PolicyRule::Mfa);
    }
    match (requested, covering) {
        (Some(requested), Some((index, eligibility))) if failed.is_empty() => {
            Ok((clamp_to(requested, eligibility).unwrap_or(requested), index))
        }
        _ => {
            failed.sort();
            Err(failed)
        }
    }
}

/// Decides an administrator's eligibility (`adminAssign`, `adminUpdate`, `adminExtend`) under
/// `Expiration_Admin_Eligibility`.
pub fn decide_eligibility(
    settings: &RoleSettings,
    schedule: &ScheduleInfo,
    now: OffsetDateTime,
) -> Result<Window, Vec<PolicyRule>> {
    requested_window(schedule, now, settings.eligibility_expiration_required, settings.eligibility_maximum)
        .map_err(|rule| vec![rule])
}

/// Decides an administrator's active assignment through PIM (`adminAssign` on assignment schedule
/// requests) under `Expiration_Admin_Assignment` and `Enablement_Admin_Assignment`.
pub fn decide_admin_assignment(
    settings: &RoleSettings,
    schedule: &ScheduleInfo,
    justification: Option<&str>,
    now: OffsetDateTime,
) -> Result<Window, Vec<PolicyRule>> {
    let mut failed = Vec::new();
    let window = requested_window(schedule, now, settings.assignment_expiration_required, settings.assignment_maximum)
        .map_err(|rule| failed.push(rule))
        .ok();
    if settings.assignment_requires_justification && justification.is_none_or(|it| it.trim().is_empty()) {
        failed.push(PolicyRule::Justification);
    }
    match window {
        Some(window) if failed.is_empty() => Ok(window),
        _ => Err(failed),
    }
}

/// An activation cut to the eligibility it uses: `None` when nothing of it is left inside.
pub fn clamp_to(activation: Window, eligibility: &Window) -> Option<Window> {
    let start = activation.start.max(eligibility.start);
    let end = match (activation.end, eligibility.end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match end {
        Some(end) if end <= start => None,
        _ => Some(Window { start, end }),
    }
}

/// An ISO 8601 duration as Graph writes them (`PT8H`, `P365D`, `P1DT2H30M`, `P2W`); years and
/// months (of no fixed length) and fractions are refused.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return None,
        None => (rest, None),
    };
    if date.is_empty() && time.is_none() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut add = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut number = String::new();
        let mut unit_index = 0;
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let position = units.iter().skip(unit_index).position(|(unit, _)| *unit == c)? + unit_index;
            let value: i64 = number.parse().ok()?;
            total = total.checked_add(Duration::seconds(value.checked_mul(units[position].1)?))?;
            number.clear();
            unit_index = position + 1;
        }
        number.is_empty().then_some(())
    };
    add(date, &[('W', 604_800), ('D', 86_400)])?;
    if let Some(time) = time {
        add(time, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    }
    (total <= LONGEST_DURATION).then_some(total)
}

/// The longest duration a request or a setting may name: ten years (no role setting allows
/// more), so a window's arithmetic can never overflow.
pub const LONGEST_DURATION: Duration = Duration::days(3650);

/// A duration as a request may send it: ISO 8601 (`PT8H`), or the clock form Kiota's Python
/// serializer writes for a `timedelta` (`8:00:00`, `1 day, 2:30:00`, `2 days, 0:00:00`).
pub fn parse_request_duration(text: &str) -> Option<Duration> {
    if let Some(iso) = parse_duration(text) {
        return Some(iso);
    }
    let (days, clock) = match text.split_once(", ") {
        Some((days, clock)) => {
            let count = days.strip_suffix(" days").or_else(|| days.strip_suffix(" day"))?;
            (count.parse::<i64>().ok().filter(|it| (0..=3650).contains(it))?, clock)
        }
        None => (0, text),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let [hours, minutes, seconds] = parts.as_slice() else { return None };
    let number = |it: &str, max: i64| it.parse::<i64>().ok().filter(|value| (0..max).contains(value) && !it.is_empty());
    let (hours, minutes, seconds) = (number(hours, 24)?, number(minutes, 60)?, number(seconds, 60)?);
    let total = Duration::days(days).checked_add(Duration::seconds(hours * 3_600 + minutes * 60 + seconds))?;
    (total <= LONGEST_DURATION).then_some(total)
}

/// A duration in ISO 8601 as Graph writes it: `PT8H`, `P365D`, `P1DT2H`, `PT0S`.
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.whole_seconds().max(0);
    let days = seconds / 86_400;
    seconds %= 86_400;
    let (hours, minutes, seconds) = (seconds / 3_600, seconds % 3_600 / 60, seconds % 60);
    let mut res = String::from("P");
    if days > 0 {
        res.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || seconds > 0 || days == 0 {
        res.push('T');
        for (value, unit) in [(hours, 'H'), (minutes, 'M'), (seconds, 'S')] {
            if value > 0 {
                res.push_str(&format!("{value}{unit}"));
            }
        }
        if res.ends_with('T') {
            res.push_str("0S");
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(minutes: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000) + Duration::minutes(minutes)
    }

    fn proof(mfa_minutes_ago: Option<i64>, now: OffsetDateTime) -> ActivationProof<'static> {
        ActivationProof {
            justification: Some("ticket 42"),
            has_ticket: false,
            mfa_at: mfa_minutes_ago.map(|it| now - Duration::minutes(it)),
        }
    }

    #[test]
    fn iso_durations() {
        for (text, seconds) in
            [("PT8H", 28_800), ("P365D", 31_536_000), ("P1DT2H30M", 95_400), ("P2W", 1_209_600), ("PT90S", 90)]
        {
            assert_eq!(parse_duration(text), Some(Duration::seconds(seconds)), "{text}");
        }
        for bad in [
            "",
            "P",
            "PT",
            "8H",
            "P1Y",
            "P1M",
            "PT1.5H",
            "PT8",
            "PTH",
            "PT1M1H",
            "P-1D",
            "PT99999999999999999H",
            "P9999999D",
            "P3651D",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        for (text, seconds) in [("8:00:00", 28_800), ("1 day, 2:30:00", 95_400), ("2 days, 0:00:00", 172_800)] {
            assert_eq!(parse_request_duration(text), Some(Duration::seconds(seconds)), "{text}");
        }
        for bad in [
            "8:00",
            "25:00:00",
            "1 week, 1:00:00",
            "-1 day, 1:00:00",
            "1:60:00",
            "200000000000000 days, 0:00:00",
            "3651 days, 0:00:00",
        ] {
            assert_eq!(parse_request_duration(bad), None, "{bad}");
        }
        for (seconds, text) in [(28_800, "PT8H"), (31_536_000, "P365D"), (95_400, "P1DT2H30M"), (0, "PT0S")] {
            assert_eq!(format_duration(Duration::seconds(seconds)), text);
        }
    }

    #[test]
    fn activation_needs_eligibility_justification_and_recent_mfa() {
        let settings = RoleSettings::default();
        let now = at(0);
        let eligible = [Window { start: at(-60), end: None }];
        let four_hours = ScheduleInfo { start: None, expiration: Expiration::AfterDuration(Duration::hours(4)) };
        let (window, index) =
            decide_activation(&settings, &eligible, &four_hours, &proof(Some(2), now), now).expect("allowed");
        assert_eq!((window, index), (Window { start: now, end: Some(now + Duration::hours(4)) }, 0));
        assert_eq!(
            decide_activation(&settings, &[], &four_hours, &proof(Some(2), now), now),
            Err(vec![PolicyRule::Eligibility])
        );
        assert_eq!(
            decide_activation(&settings, &eligible, &four_hours, &proof(Some(11), now), now),
            Err(vec![PolicyRule::Mfa])
        );
        assert_eq!(
            decide_activation(&settings, &eligible, &four_hours, &proof(None, now), now),
            Err(vec![PolicyRule::Mfa])
        );
        let silent = ActivationProof { justification: Some("  "), ..proof(None, now) };
        assert_eq!(
            decide_activation(&settings, &eligible, &four_hours, &silent, now),
            Err(vec![PolicyRule::Justification, PolicyRule::Mfa])
        );
        let too_long = ScheduleInfo { start: None, expiration: Expiration::AfterDuration(Duration::hours(9)) };
        assert_eq!(
            decide_activation(&settings, &eligible, &too_long, &proof(Some(1), now), now),
            Err(vec![PolicyRule::Expiration])
        );
        let forever = ScheduleInfo { start: None, expiration: Expiration::NoExpiration };
        assert_eq!(
            decide_activation(&settings, &eligible, &forever, &proof(Some(1), now), now),
            Err(vec![PolicyRule::Expiration])
        );
        // Without a duration, the longest the settings allow.
        let (window, _) =
            decide_activation(&settings, &eligible, &ScheduleInfo::default(), &proof(Some(1), now), now).expect("ok");
        assert_eq!(window.end, Some(now + Duration::hours(8)));
        let relaxed = RoleSettings { activation_requires_mfa: false, ..RoleSettings::default() };
        assert!(decide_activation(&relaxed, &eligible, &four_hours, &proof(None, now), now).is_ok());
    }

    #[test]
    fn activation_never_outlives_its_eligibility() {
        let now = at(0);
        let ending = [Window { start: at(-60), end: Some(at(30)) }, Window { start: at(-5), end: Some(at(90)) }];
        let four_hours = ScheduleInfo { start: None, expiration: Expiration::AfterDuration(Duration::hours(4)) };
        let (window, index) =
            decide_activation(&RoleSettings::default(), &ending, &four_hours, &proof(Some(1), now), now).expect("ok");
        assert_eq!((window.end, index), (Some(at(90)), 1), "the eligibility that lasts longest is used");
        let future = [Window { start: at(10), end: None }];
        assert_eq!(
            decide_activation(&RoleSettings::default(), &future, &four_hours, &proof(Some(1), now), now),
            Err(vec![PolicyRule::Eligibility]),
            "an eligibility that has not started does not cover now"
        );
    }

    #[test]
    fn eligibility_and_admin_assignment_follow_their_expiration_rules() {
        let now = at(0);
        let mut settings = RoleSettings::default();
        let forever = ScheduleInfo { start: None, expiration: Expiration::NoExpiration };
        assert_eq!(decide_eligibility(&settings, &forever, now), Ok(Window { start: now, end: None }));
        settings.eligibility_expiration_required = true;
        assert_eq!(decide_eligibility(&settings, &forever, now), Err(vec![PolicyRule::Expiration]));
        let year = ScheduleInfo { start: None, expiration: Expiration::AfterDuration(Duration::days(366)) };
        assert_eq!(decide_eligibility(&settings, &year, now), Err(vec![PolicyRule::Expiration]));
        let past = ScheduleInfo { start: None, expiration: Expiration::AfterDateTime(at(-1)) };
        assert_eq!(decide_eligibility(&settings, &past, now), Err(vec![PolicyRule::Expiration]));
        assert_eq!(decide_admin_assignment(&settings, &forever, None, now), Err(vec![PolicyRule::Justification]));
        assert!(decide_admin_assignment(&settings, &forever, Some("on call"), now).is_ok());
    }

    #[test]
    fn windows_at_the_end_of_time_are_refused_not_overflowed() {
        let now = at(0);
        let last = time::macros::datetime!(9999-12-31 23:00 UTC);
        let late = ScheduleInfo { start: Some(last), expiration: Expiration::AfterDuration(LONGEST_DURATION) };
        let settings = RoleSettings { activation_requires_mfa: false, ..RoleSettings::default() };
        assert_eq!(decide_eligibility(&settings, &late, now), Err(vec![PolicyRule::Expiration]));
        let unspecified = ScheduleInfo { start: Some(last), expiration: Expiration::NotSpecified };
        let proof = ActivationProof { justification: Some("why"), ..ActivationProof::default() };
        let eligible = [Window { start: now, end: None }];
        assert!(decide_activation(&settings, &eligible, &unspecified, &proof, now).is_err());
    }

    #[test]
    fn failure_messages_name_the_rules() {
        let text = policy_failure_message(&[PolicyRule::Mfa]);
        assert!(text.starts_with("The following policy rules failed: [\"MfaRule\"]"), "{text}");
        assert!(text.contains("sign in again"), "{text}");
    }

    /// One step of a random history: requests an administrator or the principal may make, and
    /// time passing.
    #[derive(Debug, Clone)]
    enum Step {
        MakeEligible { start: i64, minutes: Option<i64> },
        RemoveEligibility(usize),
        UpdateEligibility { index: usize, start: i64, minutes: Option<i64> },
        Activate { start: Option<i64>, minutes: Option<i64> },
        Wait(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        let minutes = proptest::option::of(-30i64..2_000);
        prop_oneof![
            (-60i64..600, minutes.clone()).prop_map(|(start, minutes)| Step::MakeEligible { start, minutes }),
            (0usize..4).prop_map(Step::RemoveEligibility),
            (0usize..4, -60i64..600, minutes.clone()).prop_map(|(index, start, minutes)| Step::UpdateEligibility {
                index,
                start,
                minutes
            }),
            (proptest::option::of(-60i64..600), minutes).prop_map(|(start, minutes)| Step::Activate { start, minutes }),
            (0i64..900).prop_map(Step::Wait),
        ]
    }

    fn schedule(start: Option<i64>, minutes: Option<i64>, now: OffsetDateTime) -> ScheduleInfo {
        ScheduleInfo {
            start: start.map(|it| now + Duration::minutes(it)),
            expiration: minutes.map_or(Expiration::NoExpiration, |it| Expiration::AfterDuration(Duration::minutes(it))),
        }
    }

    proptest! {
        /// No sequence of requests yields an active assignment without a covering eligibility, or
        /// one that outlives it — given that the app cuts activations with [`clamp_to`] whenever an
        /// eligibility changes, and ends them when it is removed, as it does.
        #[test]
        fn no_history_yields_an_uncovered_activation(steps in proptest::collection::vec(step(), 1..40)) {
            let settings = RoleSettings { activation_requires_mfa: false, ..RoleSettings::default() };
            let mut now = at(0);
            let mut eligibilities: Vec<(u32, Window)> = Vec::new();
            let mut activations: Vec<(u32, Window)> = Vec::new();
            let mut next_id = 0u32;
            let proof = ActivationProof { justification: Some("why"), ..ActivationProof::default() };
            for step in steps {
                match step {
                    Step::MakeEligible { start, minutes } => {
                        if let Ok(window) = decide_eligibility(&settings, &schedule(Some(start), minutes, now), now) {
                            next_id += 1;
                            eligibilities.push((next_id, window));
                        }
                    }
                    Step::RemoveEligibility(index) => {
                        if index < eligibilities.len() {
                            let (id, _) = eligibilities.remove(index);
                            activations.retain(|(used, _)| *used != id);
                        }
                    }
                    Step::UpdateEligibility { index, start, minutes } => {
                        if index < eligibilities.len()
                            && let Ok(window) = decide_eligibility(&settings, &schedule(Some(start), minutes, now), now)
                        {
                            let id = eligibilities[index].0;
                            eligibilities[index].1 = window;
                            activations = activations
                                .into_iter()
                                .filter_map(|(used, it)| {
                                    if used == id { clamp_to(it, &window).map(|it| (used, it)) } else { Some((used, it)) }
                                })
                                .collect();
                        }
                    }
                    Step::Activate { start, minutes } => {
                        let windows: Vec<Window> = eligibilities.iter().map(|(_, it)| *it).collect();
                        let asked = ScheduleInfo {
                            expiration: minutes.map_or(Expiration::NotSpecified, |it| {
                                Expiration::AfterDuration(Duration::minutes(it))
                            }),
                            ..schedule(start, None, now)
                        };
                        if let Ok((window, index)) = decide_activation(&settings, &windows, &asked, &proof, now) {
                            prop_assert!(window.end.is_some(), "an activation always ends");
                            activations.push((eligibilities[index].0, window));
                        }
                    }
                    Step::Wait(minutes) => now += Duration::minutes(minutes),
                }
                for (used, activation) in &activations {
                    let eligibility = eligibilities.iter().find(|(id, _)| id == used).map(|(_, it)| it);
                    prop_assert!(eligibility.is_some(), "an activation outlived the removal of its eligibility");
                    let eligibility = eligibility.expect("checked");
                    prop_assert!(activation.is_within(eligibility), "{activation:?} is not within {eligibility:?}");
                    if activation.holds_at(now) {
                        prop_assert!(eligibility.holds_at(now));
                    }
                }
            }
        }
    }
}
