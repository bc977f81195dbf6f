//! Authentication-method administration rules (Graph's authentication-methods API): the fixed method ids, and how a new
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

/// Applies Graph's temporaryAccessPassAuthenticationMethod: the start defaults to now and may not lie in the past (a minute of
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

/// The id of the email method (one per user).
pub const EMAIL_METHOD_ID: &str = "3ddfcfc8-9383-446f-83cc-3ab9be4be18f";

/// A phone method's type; each has a fixed id and a user has at most one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PhoneType {
    Mobile,
    AlternateMobile,
    Office,
}

impl PhoneType {
    pub const ALL: [PhoneType; 3] = [PhoneType::Mobile, PhoneType::AlternateMobile, PhoneType::Office];

    /// Graph's `phoneType`.
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneType::Mobile => "mobile",
            PhoneType::AlternateMobile => "alternateMobile",
            PhoneType::Office => "office",
        }
    }

    /// The method's fixed id (Graph's authentication-method resources).
    pub fn id(self) -> &'static str {
        match self {
            PhoneType::Mobile => "3179e48a-750b-4051-897c-87b9720928f7",
            PhoneType::AlternateMobile => "b6332ec1-7057-4abe-9331-3d72feddfe41",
            PhoneType::Office => "e37fc753-ff3b-4958-9484-eaa9425c82bc",
        }
    }

    pub fn parse(text: &str) -> Option<PhoneType> {
        PhoneType::ALL.into_iter().find(|it| it.as_str().eq_ignore_ascii_case(text))
    }

    pub fn from_id(id: &str) -> Option<PhoneType> {
        PhoneType::ALL.into_iter().find(|it| it.id().eq_ignore_ascii_case(id))
    }
}

/// Checks Graph's phone number format, `+{country code} {number}` with an optional
/// `x{extension}`: a 1–3 digit country code not starting with 0, 4 or more digits (15 at most
/// with the country code, as E.164 allows), an extension of up to 6 digits.
pub fn validate_phone_number(number: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "Invalid phone number '{number}': use the format '+{{country code}} {{number}}', optionally followed by \
             'x{{extension}}', for example '+1 2065555555' or '+1 5555551234x123'."
        )
    };
    let rest = number.strip_prefix('+').ok_or_else(bad)?;
    let (country, rest) = rest.split_once(' ').ok_or_else(bad)?;
    let (main, extension) = match rest.split_once('x') {
        Some((main, extension)) => (main, Some(extension)),
        None => (rest, None),
    };
    let digits = |text: &str, range: std::ops::RangeInclusive<usize>| {
        range.contains(&text.len()) && text.bytes().all(|it| it.is_ascii_digit())
    };
    // E.164: a country code does not start with 0, and country code and number hold 15 digits
    // at most together.
    let is_e164 = !country.starts_with('0') && country.len() + main.len() <= 15;
    if digits(country, 1..=3) && digits(main, 4..=15) && is_e164 && extension.is_none_or(|it| digits(it, 1..=6)) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// What holders of `restrictedRead` see of a phone number: the country code and the last two
/// digits (`+1 XXXXXXXX12`).
pub fn mask_phone_number(number: &str) -> String {
    let Some((country, rest)) = number.split_once(' ') else { return "XXXXXXXX".into() };
    let main = rest.split('x').next().unwrap_or_default();
    let keep = main.len().min(2);
    format!("{country} {}{}", "X".repeat(main.len() - keep), &main[main.len() - keep..])
}

/// What holders of `restrictedRead` see of an email address: its first character and domain
/// (`a***@contoso.com`).
pub fn mask_email_address(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".into(),
    }
}

/// Whether a phone of `kind` may be added to a user who has `existing`: one per type, and an
/// alternate mobile needs a mobile.
pub fn check_phone_add(existing: &[PhoneType], kind: PhoneType) -> Result<(), String> {
    if existing.contains(&kind) {
        return Err(format!("The user already has a phone method of type '{}'; update it instead.", kind.as_str()));
    }
    if kind == PhoneType::AlternateMobile && !existing.contains(&PhoneType::Mobile) {
        return Err("An alternateMobile phone needs a mobile phone first.".into());
    }
    Ok(())
}

/// Whether a phone of `kind` may be deleted: not the mobile while an alternate mobile exists.
pub fn check_phone_delete(existing: &[PhoneType], kind: PhoneType) -> Result<(), String> {
    if kind == PhoneType::Mobile && existing.contains(&PhoneType::AlternateMobile) {
        return Err("Delete the alternateMobile phone before the mobile phone.".into());
    }
    Ok(())
}

#[cfg(test)]
mod phone_tests {
    use super::*;

    #[test]
    fn phone_numbers_follow_graphs_format() {
        for good in ["+1 2065555555", "+1 5555551234x123", "+44 2071234567", "+358 401234567"] {
            assert!(validate_phone_number(good).is_ok(), "{good}");
        }
        for bad in [
            "2065555555",
            "+1 206",
            "+1 206-555-5555",
            "+1234 2065555555",
            "+1 2065555555x",
            "+12065555555",
            "+0 2065550102",
            "+358 4012345678901",
        ] {
            assert!(validate_phone_number(bad).is_err(), "{bad}");
        }
        assert_eq!(mask_phone_number("+1 2065555512"), "+1 XXXXXXXX12");
        assert_eq!(mask_phone_number("+1 5555551234x123"), "+1 XXXXXXXX34");
        assert_eq!(mask_email_address("adele@home.example"), "a***@home.example");
    }

    #[test]
    fn one_phone_per_type_and_the_alternate_needs_the_mobile() {
        use PhoneType::*;
        assert!(check_phone_add(&[], Mobile).is_ok());
        assert!(check_phone_add(&[Mobile], Mobile).is_err());
        assert!(check_phone_add(&[], AlternateMobile).is_err());
        assert!(check_phone_add(&[Mobile], AlternateMobile).is_ok());
        assert!(check_phone_delete(&[Mobile, AlternateMobile], Mobile).is_err());
        assert!(check_phone_delete(&[Mobile, AlternateMobile], AlternateMobile).is_ok());
        assert_eq!(PhoneType::from_id("3179E48A-750B-4051-897C-87B9720928F7"), Some(Mobile));
    }
}
