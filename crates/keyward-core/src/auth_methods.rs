//! Authentication-method administration rules (entra.md §4): the fixed method ids, and how a new
//! Temporary Access Pass's start, lifetime and one-time use follow from a request and the policy.

use time::{Duration, OffsetDateTime};

use crate::signin::TapPolicy;

/// The id Graph gives every user's password method.
pub const PASSWORD_METHOD_ID: &str = "28c10230-6103-485e-b985-444c60001490";

/// What a request to create a Temporary Access Pass may set (all optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapRequest {
    pub start: Option<OffsetDateTime>,
    pub lifetime_minutes: Option<i64>,
    pub is_usable_once: Option<bool>,
}

/// A pass to create: when it starts, how long it lives, whether it is good once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapPlan {
    pub start: OffsetDateTime,
    pub lifetime_minutes: i64,
    pub is_usable_once: bool,
}

/// Applies entra.md §4.3: the start defaults to now and may not lie in the past (a minute of
/// clock skew aside) or more than thirty days ahead; the lifetime defaults to the policy's and
/// must lie within its minimum and maximum; a pass may be reusable only if the policy allows it.
pub fn plan_tap(policy: &TapPolicy, request: TapRequest, now: OffsetDateTime) -> Result<TapPlan, String> {
    let start = request.start.unwrap_or(now);
    if start < now - Duration::minutes(1) {
        return Err("startDateTime must not be in the past.".into());
    }
    if start > now + Duration::days(30) {
        return Err("startDateTime must be within the next 30 days.".into());
    }
    let lifetime = request.lifetime_minutes.unwrap_or(policy.default_lifetime_minutes);
    if !(policy.minimum_lifetime_minutes..=policy.maximum_lifetime_minutes).contains(&lifetime) {
        return Err(format!(
            "lifetimeInMinutes must be between {} and {} (the Temporary Access Pass policy).",
            policy.minimum_lifetime_minutes, policy.maximum_lifetime_minutes
        ));
    }
    let is_usable_once = match request.is_usable_once {
        Some(false) if policy.is_usable_once => {
            return Err("isUsableOnce must be true: the Temporary Access Pass policy requires one-time passes.".into());
        }
        Some(it) => it,
        None => policy.is_usable_once,
    };
    Ok(TapPlan { start, lifetime_minutes: lifetime, is_usable_once })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    #[test]
    fn passes_follow_the_policy() {
        let policy = TapPolicy::default();
        let plan = plan_tap(&policy, TapRequest::default(), NOW).expect("defaults");
        assert_eq!(plan, TapPlan { start: NOW, lifetime_minutes: 60, is_usable_once: false });
        let later = NOW + Duration::days(2);
        let plan = plan_tap(
            &policy,
            TapRequest { start: Some(later), lifetime_minutes: Some(480), is_usable_once: Some(true) },
            NOW,
        );
        assert_eq!(plan, Ok(TapPlan { start: later, lifetime_minutes: 480, is_usable_once: true }));
        for bad in [
            TapRequest { lifetime_minutes: Some(59), ..TapRequest::default() },
            TapRequest { lifetime_minutes: Some(481), ..TapRequest::default() },
            TapRequest { start: Some(NOW - Duration::hours(1)), ..TapRequest::default() },
            TapRequest { start: Some(NOW + Duration::days(31)), ..TapRequest::default() },
        ] {
            assert!(plan_tap(&policy, bad, NOW).is_err(), "{bad:?}");
        }
        let one_time = TapPolicy { is_usable_once: true, ..TapPolicy::default() };
        assert!(plan_tap(&one_time, TapRequest { is_usable_once: Some(false), ..TapRequest::default() }, NOW).is_err());
        assert!(plan_tap(&one_time, TapRequest::default(), NOW).is_ok_and(|it| it.is_usable_once));
    }
}
