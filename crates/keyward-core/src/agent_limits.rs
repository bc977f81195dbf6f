//! Per-agent limits: how many Temporary Access Passes, password resets and MFA resets one
//! administrator (or application) may do to other users in an hour. A compromised service-desk
//! account cannot mass-reset a tenant: past the cap the operation is refused, and the refusal is
//! audited. Off by default (Entra has no such limit, and scripts written for it must keep working).

/// The rule a refusal names.
pub const RULE: &str = "agent-hourly-limit";

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAction {
    /// A Temporary Access Pass created for another user (alone or in a one-step MFA reset).
    TemporaryAccessPass,
    /// A password reset by an administrator.
    PasswordReset,
    /// An MFA reset: "require re-register MFA", or the one-step reset.
    MfaReset,
}

impl AgentAction {
    /// Every action a limit can count.
    pub const ALL: [AgentAction; 3] =
        [AgentAction::TemporaryAccessPass, AgentAction::PasswordReset, AgentAction::MfaReset];

    /// The name stored with each counted action.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentAction::TemporaryAccessPass => "temporaryAccessPass",
            AgentAction::PasswordReset => "passwordReset",
            AgentAction::MfaReset => "mfaReset",
        }
    }

    /// The policy property that caps it (`keywardServiceDeskPolicy`).
    pub fn property(self) -> &'static str {
        match self {
            AgentAction::TemporaryAccessPass => "temporaryAccessPassesPerAgentPerHour",
            AgentAction::PasswordReset => "passwordResetsPerAgentPerHour",
            AgentAction::MfaReset => "mfaResetsPerAgentPerHour",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            AgentAction::TemporaryAccessPass => "Temporary Access Passes",
            AgentAction::PasswordReset => "password resets",
            AgentAction::MfaReset => "MFA resets and re-registration requirements",
        }
    }
}

/// The tenant's caps per agent per hour; `None`: no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentLimits {
    pub passes_per_hour: Option<i64>,
    pub password_resets_per_hour: Option<i64>,
    pub mfa_resets_per_hour: Option<i64>,
}

/// The largest cap one may set (a cap above it is no cap).
pub const MAX_CAP: i64 = 10_000;

impl AgentLimits {
    pub fn cap(&self, action: AgentAction) -> Option<i64> {
        match action {
            AgentAction::TemporaryAccessPass => self.passes_per_hour,
            AgentAction::PasswordReset => self.password_resets_per_hour,
            AgentAction::MfaReset => self.mfa_resets_per_hour,
        }
    }

    pub fn set(&mut self, action: AgentAction, cap: Option<i64>) -> Result<(), String> {
        if let Some(cap) = cap
            && !(1..=MAX_CAP).contains(&cap)
        {
            return Err(format!("Property '{}' must be null (no limit) or from 1 to {MAX_CAP}.", action.property()));
        }
        match action {
            AgentAction::TemporaryAccessPass => self.passes_per_hour = cap,
            AgentAction::PasswordReset => self.password_resets_per_hour = cap,
            AgentAction::MfaReset => self.mfa_resets_per_hour = cap,
        }
        Ok(())
    }
}

/// Whether one more `action` is allowed to an agent who did `done` of them in the last hour;
/// the refusal's message says what was reached and what to do.
pub fn check(limits: &AgentLimits, action: AgentAction, done: i64) -> Result<(), String> {
    match limits.cap(action) {
        Some(cap) if done >= cap => Err(format!(
            "You have reached the tenant's limit of {cap} {} per administrator per hour ({done} in the last hour). \
             Try again later, or ask a Global Administrator to raise keywardServiceDeskPolicy.{} if this is \
             expected work.",
            action.noun(),
            action.property()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_what_was_done_in_the_hour() {
        let mut limits = AgentLimits::default();
        assert_eq!(check(&limits, AgentAction::TemporaryAccessPass, 1_000_000), Ok(()), "no cap by default");
        limits.set(AgentAction::TemporaryAccessPass, Some(2)).expect("valid");
        assert_eq!(check(&limits, AgentAction::TemporaryAccessPass, 1), Ok(()));
        let refused = check(&limits, AgentAction::TemporaryAccessPass, 2).expect_err("at the cap");
        assert!(
            refused.contains("limit of 2 Temporary Access Passes")
                && refused.contains("temporaryAccessPassesPerAgentPerHour"),
            "{refused}"
        );
        assert_eq!(check(&limits, AgentAction::PasswordReset, 50), Ok(()), "each action has its own cap");
        assert!(limits.set(AgentAction::MfaReset, Some(0)).is_err());
        assert!(limits.set(AgentAction::MfaReset, Some(MAX_CAP + 1)).is_err());
        assert!(limits.set(AgentAction::MfaReset, None).is_ok());
    }
}
