//! Dual control: with the tenant's policy on, the service desk's most dangerous changes to a
//! privileged user (a Temporary Access Pass, a password reset, re-registration, the one-step MFA
//! reset, deleting a method) do not run at once. They become a request that another eligible
//! administrator approves or denies (never the requester, never the target), that runs on approval
//! as the requester, and that expires unanswered. Off by default (Entra has no such step, and
//! scripts written for it must keep working).

use time::{Duration, OffsetDateTime};

use crate::auth_methods::TapRequest;
use crate::authz::actions;
use crate::ids::ObjectId;

/// The rule a self-approval refusal names.
pub const RULE_NO_SELF_APPROVAL: &str = "dual-control-no-self-approval";
/// The rule a refusal of an approver without the operation's permissions names.
pub const RULE_APPROVER: &str = "dual-control-approver";

/// How long a request waits for a decision by default, and the bounds one may set.
pub const DEFAULT_MINUTES: i64 = 60;
pub const MIN_MINUTES: i64 = 5;
pub const MAX_MINUTES: i64 = 7 * 24 * 60;

/// The tenant's dual-control settings (part of `keywardServiceDeskPolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DualControl {
    pub is_enabled: bool,
    /// Members of this group (directly or through nested groups) are held too, privileged or not.
    pub group_id: Option<ObjectId>,
    /// How long a request waits for a decision before it expires.
    pub request_minutes: i64,
}

impl Default for DualControl {
    fn default() -> DualControl {
        DualControl { is_enabled: false, group_id: None, request_minutes: DEFAULT_MINUTES }
    }
}

impl DualControl {
    /// The policy's properties as `keywardServiceDeskPolicy` names them.
    pub const ENABLED: &'static str = "dualControlEnabled";
    pub const GROUP: &'static str = "dualControlGroupId";
    pub const MINUTES: &'static str = "dualControlRequestLifetimeInMinutes";

    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_MINUTES..=MAX_MINUTES).contains(&self.request_minutes) {
            return Err(format!(
                "Property '{}' must be from {MIN_MINUTES} to {MAX_MINUTES} (minutes).",
                DualControl::MINUTES
            ));
        }
        Ok(())
    }

    /// Whether a covered change to a target needs a second administrator: the policy is on and
    /// the target holds (or may activate) a privileged role, or is in the policy's group.
    pub fn holds(&self, target_is_privileged: bool, target_in_group: bool) -> bool {
        self.is_enabled && (target_is_privileged || target_in_group)
    }
}

/// A kind of method a held deletion removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    SoftwareOath,
    Phone,
    Email,
    Passkey,
    TemporaryAccessPass,
}

impl MethodKind {
    pub const ALL: [MethodKind; 5] = [
        MethodKind::SoftwareOath,
        MethodKind::Phone,
        MethodKind::Email,
        MethodKind::Passkey,
        MethodKind::TemporaryAccessPass,
    ];

    /// The name stored with a request (Graph's method collection).
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::SoftwareOath => "softwareOathMethods",
            MethodKind::Phone => "phoneMethods",
            MethodKind::Email => "emailMethods",
            MethodKind::Passkey => "fido2Methods",
            MethodKind::TemporaryAccessPass => "temporaryAccessPassMethods",
        }
    }

    pub fn parse(text: &str) -> Option<MethodKind> {
        MethodKind::ALL.into_iter().find(|it| it.as_str() == text)
    }

    fn noun(self) -> &'static str {
        match self {
            MethodKind::SoftwareOath => "authenticator app",
            MethodKind::Phone => "phone",
            MethodKind::Email => "email",
            MethodKind::Passkey => "passkey",
            MethodKind::TemporaryAccessPass => "Temporary Access Pass",
        }
    }
}

/// A change dual control holds, with what it needs to run later (never a secret: a pass or a
/// password chosen at request time is kept only as its hash, beside the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    CreatePass(TapRequest),
    ResetPassword,
    RequireReregistration,
    ResetMfa { pass: Option<TapRequest> },
    DeleteMethod { kind: MethodKind, id: String },
}

impl Operation {
    /// The operation's name in the API (`operation` of a `keywardServiceDeskRequest`).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::CreatePass(_) => "createTemporaryAccessPass",
            Operation::ResetPassword => "resetPassword",
            Operation::RequireReregistration => "requireMfaReregistration",
            Operation::ResetMfa { .. } => "resetMfa",
            Operation::DeleteMethod { .. } => "deleteMethod",
        }
    }

    /// What it does, in a sentence fragment for pages and messages.
    pub fn describe(&self) -> String {
        match self {
            Operation::CreatePass(_) => "Create a Temporary Access Pass".into(),
            Operation::ResetPassword => "Reset the password".into(),
            Operation::RequireReregistration => "Require re-registration of MFA".into(),
            Operation::ResetMfa { pass: Some(_) } => "Reset MFA and create a Temporary Access Pass".into(),
            Operation::ResetMfa { pass: None } => "Reset MFA".into(),
            Operation::DeleteMethod { kind, .. } => format!("Delete the {} method", kind.noun()),
        }
    }

    /// The permissions the change needs on its target: the requester needs them when it runs,
    /// and an approver needs them to decide (who could not do it cannot approve it).
    pub fn actions(&self) -> Vec<&'static str> {
        match self {
            Operation::CreatePass(_) => vec![actions::USERS_AUTH_METHODS_CREATE],
            Operation::ResetPassword => vec![actions::USERS_PASSWORD_UPDATE, actions::USERS_AUTH_METHODS_UPDATE],
            Operation::RequireReregistration | Operation::DeleteMethod { .. } => {
                vec![actions::USERS_AUTH_METHODS_DELETE]
            }
            Operation::ResetMfa { pass } => {
                let mut res = vec![
                    actions::USERS_AUTH_METHODS_DELETE,
                    actions::USERS_AUTH_METHODS_UPDATE,
                    actions::USERS_INVALIDATE_REFRESH_TOKENS,
                ];
                if pass.is_some() {
                    res.push(actions::USERS_AUTH_METHODS_CREATE);
                }
                res
            }
        }
    }

    /// The pass the change creates, if any.
    pub fn pass(&self) -> Option<&TapRequest> {
        match self {
            Operation::CreatePass(pass) | Operation::ResetMfa { pass: Some(pass) } => Some(pass),
            _ => None,
        }
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for a decision.
    PendingApproval,
    /// Approved, and the change ran.
    Completed,
    Denied,
    /// Approved, but the change could not run (the requester lost the right, the method went).
    Failed,
    /// Nobody decided in time.
    Expired,
}

impl Status {
    pub const ALL: [Status; 5] =
        [Status::PendingApproval, Status::Completed, Status::Denied, Status::Failed, Status::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingApproval => "pendingApproval",
            Status::Completed => "completed",
            Status::Denied => "denied",
            Status::Failed => "failed",
            Status::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|it| it.as_str() == text)
    }

    /// The status of a request stored as `stored` that expires at `expires` (a waiting request
    /// past its time shows as expired; nothing has to run for it to expire).
    pub fn at(stored: Status, expires: OffsetDateTime, now: OffsetDateTime) -> Status {
        if stored == Status::PendingApproval && now >= expires { Status::Expired } else { stored }
    }
}

/// When a request made at `now` under `policy` expires.
pub fn expires_at(policy: &DualControl, now: OffsetDateTime) -> OffsetDateTime {
    now + Duration::minutes(policy.request_minutes)
}

/// Whether `decider` may approve or deny a request by `requester` on `target`: never the
/// requester, never the target (a second person must look at it). Their permissions on the
/// target are checked apart, with the operation's [`Operation::actions`].
pub fn check_decider(requester: &ObjectId, target: &ObjectId, decider: &ObjectId) -> Result<(), String> {
    if decider == requester {
        return Err("You asked for this change: another administrator must approve or deny it.".into());
    }
    if decider == target {
        return Err("This change is to your own account: another administrator must approve or deny it.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::parse(&format!("00000000-0000-0000-0000-0000000000{n:02}")).expect("id")
    }

    #[test]
    fn only_privileged_or_grouped_targets_are_held_and_only_when_on() {
        let mut policy = DualControl::default();
        assert!(!policy.holds(true, true), "off by default");
        policy.is_enabled = true;
        assert!(policy.holds(true, false));
        assert!(policy.holds(false, true));
        assert!(!policy.holds(false, false));
    }

    #[test]
    fn the_lifetime_is_bounded() {
        let mut policy = DualControl { is_enabled: true, ..DualControl::default() };
        assert_eq!(policy.validate(), Ok(()));
        policy.request_minutes = MIN_MINUTES - 1;
        assert!(policy.validate().expect_err("too short").contains(DualControl::MINUTES));
        policy.request_minutes = MAX_MINUTES + 1;
        assert!(policy.validate().is_err());
    }

    #[test]
    fn neither_the_requester_nor_the_target_decides() {
        let (requester, target, other) = (id(1), id(2), id(3));
        assert!(check_decider(&requester, &target, &requester).is_err());
        assert!(check_decider(&requester, &target, &target).is_err());
        assert_eq!(check_decider(&requester, &target, &other), Ok(()));
    }

    #[test]
    fn a_waiting_request_expires_by_itself() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let expires = expires_at(&DualControl::default(), now);
        assert_eq!(expires - now, Duration::minutes(DEFAULT_MINUTES));
        assert_eq!(Status::at(Status::PendingApproval, expires, now), Status::PendingApproval);
        assert_eq!(Status::at(Status::PendingApproval, expires, expires), Status::Expired);
        assert_eq!(Status::at(Status::Completed, expires, expires), Status::Completed, "a decided one stays");
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn an_approver_needs_what_the_change_needs() {
        let with_pass = Operation::ResetMfa { pass: Some(TapRequest::default()) };
        assert!(with_pass.actions().contains(&actions::USERS_AUTH_METHODS_CREATE));
        assert!(!Operation::ResetMfa { pass: None }.actions().contains(&actions::USERS_AUTH_METHODS_CREATE));
        assert!(Operation::ResetPassword.actions().contains(&actions::USERS_PASSWORD_UPDATE));
        for kind in MethodKind::ALL {
            assert_eq!(MethodKind::parse(kind.as_str()), Some(kind));
            let op = Operation::DeleteMethod { kind, id: String::new() };
            assert!(op.describe().starts_with("Delete the "));
        }
    }
}
