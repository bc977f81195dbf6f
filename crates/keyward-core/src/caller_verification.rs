//! Caller verification: before a service-desk agent hands over a Temporary Access Pass or a
//! password (or changes a privileged user's methods), the user proves it is them on the line. The
//! agent starts a verification; the user, signed in with a factor they still hold, types on the
//! "Verify a service-desk call" page the code the agent reads out. A user who holds no factor is
//! vouched for by their manager or another administrator. A verification is bound to the agent
//! and the user and counts for a few minutes. Off by default (Entra has no such step).

use time::{Duration, OffsetDateTime};

/// The rule a change refused for want of a verified caller names.
pub const RULE: &str = "caller-verification";
/// How long the user has to confirm.
pub const PENDING_LIFETIME: Duration = Duration::minutes(10);
/// How long a confirmed verification lets the agent act.
pub const VERIFIED_LIFETIME: Duration = Duration::minutes(15);
/// Wrong codes before the verification fails.
pub const MAX_ATTEMPTS: i64 = 3;
/// Digits of the code the agent reads out.
pub const CODE_DIGITS: usize = 6;

/// What the tenant's policy asks a verified caller for (`callerVerificationOperations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Covered {
    /// Creating a Temporary Access Pass, for anyone.
    TemporaryAccessPasses,
    /// Resetting or setting a password, for anyone.
    PasswordResets,
    /// Wiping a user's second factors or provisioning a passkey for them, for anyone.
    MfaResets,
    /// Any other change to a privileged user's methods.
    PrivilegedMethodChanges,
    /// Any other change to anyone's methods.
    AllMethodChanges,
}

impl Covered {
    pub const ALL: [Covered; 5] = [
        Covered::TemporaryAccessPasses,
        Covered::PasswordResets,
        Covered::MfaResets,
        Covered::PrivilegedMethodChanges,
        Covered::AllMethodChanges,
    ];
    /// What the policy covers unless told otherwise.
    pub const DEFAULT: [Covered; 4] =
        [Covered::TemporaryAccessPasses, Covered::PasswordResets, Covered::MfaResets, Covered::PrivilegedMethodChanges];

    pub fn as_str(self) -> &'static str {
        match self {
            Covered::TemporaryAccessPasses => "temporaryAccessPasses",
            Covered::PasswordResets => "passwordResets",
            Covered::MfaResets => "mfaResets",
            Covered::PrivilegedMethodChanges => "privilegedUserMethodChanges",
            Covered::AllMethodChanges => "allMethodChanges",
        }
    }

    pub fn parse(text: &str) -> Option<Covered> {
        Covered::ALL.into_iter().find(|it| it.as_str().eq_ignore_ascii_case(text))
    }
}

/// The tenant's caller verification policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub is_enabled: bool,
    /// Sorted, without repeats.
    pub covered: Vec<Covered>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { is_enabled: false, covered: Covered::DEFAULT.to_vec() }
    }
}

impl Policy {
    /// Whether `change` to a user (privileged or not) needs a verified caller.
    pub fn requires(&self, change: Change, target_is_privileged: bool) -> bool {
        let covers = |it: Covered| self.covered.contains(&it);
        self.is_enabled
            && match change {
                Change::TemporaryAccessPass => covers(Covered::TemporaryAccessPasses),
                Change::PasswordReset => covers(Covered::PasswordResets),
                Change::MfaReset => covers(Covered::MfaResets),
                Change::OtherMethodChange => {
                    covers(Covered::AllMethodChanges)
                        || target_is_privileged && covers(Covered::PrivilegedMethodChanges)
                }
            }
    }

    /// Reads the operations' names (unknown ones refused).
    pub fn parse_covered<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Covered>, String> {
        let mut res = names
            .into_iter()
            .map(|name| {
                Covered::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = Covered::ALL.iter().map(|it| it.as_str()).collect();
                    format!("'{name}' is not one of {}.", known.join(", "))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        res.sort();
        res.dedup();
        Ok(res)
    }
}

/// A change the policy may require a verified caller for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    TemporaryAccessPass,
    PasswordReset,
    /// Wiping a user's second factors (re-registration, the one-step reset without a pass) or
    /// provisioning a passkey for them: what lets a caller register their own factor next.
    MfaReset,
    /// Any other change to a user's authentication methods (added, changed, deleted,
    /// re-registration, the one-step reset without a pass).
    OtherMethodChange,
}

/// Whether `change` to a user needs a verified caller under the default coverage: with the
/// policy on, a pass, a password reset and an MFA reset always, every other method change when
/// the user is privileged.
pub fn is_required(is_enabled: bool, change: Change, target_is_privileged: bool) -> bool {
    Policy { is_enabled, ..Policy::default() }.requires(change, target_is_privileged)
}

/// Where a verification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Verified,
    Failed,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Verified => "verified",
            Status::Failed => "failed",
            Status::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [Status::Pending, Status::Verified, Status::Failed, Status::Expired].into_iter().find(|it| it.as_str() == text)
    }

    /// The status of a verification stored as `stored`, made at `created` and verified at
    /// `verified` (if it was), at `now`: a pending one expires after [`PENDING_LIFETIME`], a
    /// verified one after [`VERIFIED_LIFETIME`].
    pub fn at(
        stored: Status,
        created: OffsetDateTime,
        verified: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Status {
        match (stored, verified) {
            (Status::Pending, _) if now >= created + PENDING_LIFETIME => Status::Expired,
            (Status::Verified, Some(at)) if now >= at + VERIFIED_LIFETIME => Status::Expired,
            (other, _) => other,
        }
    }
}

/// A code as typed: digits only (spaces and dashes ignored).
pub fn normalise_code(typed: &str) -> String {
    typed.chars().filter(char::is_ascii_digit).collect()
}

/// A code as the agent reads it out: `482 913`.
pub fn display_code(code: &str) -> String {
    match code.len() {
        6 => format!("{} {}", &code[..3], &code[3..]),
        _ => code.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_and_resets_always_other_changes_for_privileged_users() {
        assert!(!is_required(false, Change::TemporaryAccessPass, true), "off by default");
        assert!(is_required(true, Change::TemporaryAccessPass, false));
        assert!(is_required(true, Change::PasswordReset, false));
        assert!(is_required(true, Change::MfaReset, false));
        assert!(!is_required(true, Change::OtherMethodChange, false));
        assert!(is_required(true, Change::OtherMethodChange, true));
    }

    #[test]
    fn the_tenant_chooses_what_is_covered() {
        let all = Policy { is_enabled: true, covered: vec![Covered::AllMethodChanges] };
        assert!(all.requires(Change::OtherMethodChange, false));
        assert!(!all.requires(Change::TemporaryAccessPass, false), "only what is named");
        let names = Policy::parse_covered(["passwordResets", "temporaryaccesspasses", "passwordResets"]).expect("ok");
        assert_eq!(names, [Covered::TemporaryAccessPasses, Covered::PasswordResets]);
        assert!(Policy::parse_covered(["everything"]).expect_err("unknown").contains("allMethodChanges"));
        for it in Covered::ALL {
            assert_eq!(Covered::parse(it.as_str()), Some(it));
        }
    }

    #[test]
    fn verifications_expire() {
        let created = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        assert_eq!(Status::at(Status::Pending, created, None, created + Duration::minutes(9)), Status::Pending);
        assert_eq!(Status::at(Status::Pending, created, None, created + PENDING_LIFETIME), Status::Expired);
        let verified = created + Duration::minutes(2);
        let later = verified + Duration::minutes(14);
        assert_eq!(Status::at(Status::Verified, created, Some(verified), later), Status::Verified);
        assert_eq!(
            Status::at(Status::Verified, created, Some(verified), verified + VERIFIED_LIFETIME),
            Status::Expired
        );
        assert_eq!(Status::at(Status::Failed, created, None, later), Status::Failed);
        for status in [Status::Pending, Status::Verified, Status::Failed, Status::Expired] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn codes_are_read_out_in_two_halves_and_typed_loosely() {
        assert_eq!(display_code("482913"), "482 913");
        assert_eq!(normalise_code(" 482-913 "), "482913");
        assert_eq!(normalise_code("48a2"), "482");
    }
}
