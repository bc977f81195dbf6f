//! The columns of a user's profile (keyward-core's `profile::FIELDS`), the manager and the
//! password's last change, and the SQL that writes them, built once from one table.

use std::sync::LazyLock;

use keyward_core::directory::User;
use keyward_core::ids::ObjectId;
use keyward_core::profile::{self, Profile};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::sql::{Arg, fmt_ts, parse_ts};

/// Each text profile property and its column; each has a lowercased `_lc` twin for `$filter`.
pub(crate) const PROFILE_COLUMNS: &[(&str, &str)] = &[
    ("ageGroup", "age_group"),
    ("city", "city"),
    ("companyName", "company_name"),
    ("consentProvidedForMinor", "consent_provided_for_minor"),
    ("country", "country"),
    ("creationType", "creation_type"),
    ("employeeId", "employee_id"),
    ("employeeType", "employee_type"),
    ("externalUserState", "external_user_state"),
    ("faxNumber", "fax_number"),
    ("officeLocation", "office_location"),
    ("passwordPolicies", "password_policies"),
    ("postalCode", "postal_code"),
    ("preferredLanguage", "preferred_language"),
    ("state", "state"),
    ("streetAddress", "street_address"),
    ("userType", "user_type"),
];

/// [`PROFILE_COLUMNS`] with each property's field, found once rather than for every user read.
static PROFILE_FIELDS: LazyLock<Vec<(&str, Option<&profile::Field>, &str)>> =
    LazyLock::new(|| PROFILE_COLUMNS.iter().map(|(name, column)| (*name, profile::find(name), *column)).collect());

/// The one date-time profile property, kept as a stored timestamp so ranges compare as text.
pub(crate) const HIRE_DATE: (&str, &str) = ("employeeHireDate", "employee_hire_date");

/// The profile's columns after the core set, in the order [`profile_args`] binds them. The
/// manager is written by `insert_user` after them, and changed only by `set_manager` (an update
/// of other properties never writes it back).
fn written_columns() -> Vec<String> {
    let mut res = Vec::new();
    for (_, column) in PROFILE_COLUMNS {
        res.push((*column).to_owned());
        res.push(format!("{column}_lc"));
    }
    res.push(HIRE_DATE.1.to_owned());
    res
}

/// `INSERT INTO users`: the core columns `$1..$26`, the password hash `$27`, the password's
/// change time `$28`, then the profile and the manager.
pub(crate) static INSERT_USER: LazyLock<String> = LazyLock::new(|| {
    let mut extra = written_columns();
    extra.push("manager_id".to_owned());
    let placeholders: Vec<String> = (1..=28 + extra.len()).map(|it| format!("${it}")).collect();
    format!(
        "INSERT INTO users (id, tenant_id, upn, upn_lc, display_name, display_name_lc, given_name, \
         given_name_lc, surname, surname_lc, mail, mail_lc, mail_nickname, mail_nickname_lc, mobile_phone, \
         mobile_phone_lc, job_title, job_title_lc, department, department_lc, usage_location, \
         usage_location_lc, account_enabled, created_at, sessions_valid_from, force_change_password, \
         password_hash, password_changed_at, {}) VALUES ({})",
        extra.join(", "),
        placeholders.join(", ")
    )
});

/// `UPDATE users`: the core columns `$1..$26`, then the profile.
pub(crate) static UPDATE_USER: LazyLock<String> = LazyLock::new(|| {
    let extra: Vec<String> =
        written_columns().into_iter().enumerate().map(|(idx, column)| format!("{column} = ${}", 27 + idx)).collect();
    format!(
        "UPDATE users SET upn = $3, upn_lc = $4, display_name = $5, display_name_lc = $6, given_name = $7, \
         given_name_lc = $8, surname = $9, surname_lc = $10, mail = $11, mail_lc = $12, mail_nickname = $13, \
         mail_nickname_lc = $14, mobile_phone = $15, mobile_phone_lc = $16, job_title = $17, job_title_lc = $18, \
         department = $19, department_lc = $20, usage_location = $21, usage_location_lc = $22, \
         account_enabled = $23, created_at = $24, sessions_valid_from = $25, force_change_password = $26, {} \
         WHERE id = $1 AND tenant_id = $2",
        extra.join(", ")
    )
});

/// The profile's values in [`written_columns`]' order.
pub(crate) fn profile_args(user: &User) -> Result<Vec<Arg>, StoreError> {
    let mut res = Vec::with_capacity(PROFILE_COLUMNS.len() * 2 + 2);
    for (name, _) in PROFILE_COLUMNS {
        let value = user.profile.get(name);
        res.push(Arg::MaybeText(value.map(str::to_owned)));
        res.push(Arg::MaybeText(value.map(str::to_lowercase)));
    }
    let hire = user.profile.get(HIRE_DATE.0).map(parse_ts).transpose()?;
    res.push(Arg::MaybeText(hire.map(fmt_ts)));
    Ok(res)
}

/// What a user row holds beyond the core columns.
pub(crate) struct Extra {
    pub(crate) profile: Profile,
    pub(crate) manager: Option<ObjectId>,
    pub(crate) password_changed: Option<OffsetDateTime>,
}

/// Reads the extra columns through `get` (a row's optional text column by name).
pub(crate) fn read_extra(get: impl Fn(&str) -> Result<Option<String>, StoreError>) -> Result<Extra, StoreError> {
    let mut profile = Profile::default();
    for (name, field, column) in PROFILE_FIELDS.iter() {
        let field = field.ok_or_else(|| StoreError::Other(format!("unknown profile field {name}")))?;
        profile.set(field, get(column)?);
    }
    if let Some(raw) = get(HIRE_DATE.1)? {
        let field = profile::find(HIRE_DATE.0).ok_or_else(|| StoreError::Other("unknown hire date".into()))?;
        profile.set(field, Some(profile::graph_timestamp(parse_ts(&raw)?)));
    }
    let manager = get("manager_id")?
        .map(|raw| ObjectId::parse(&raw).ok_or_else(|| StoreError::Other(format!("corrupt object id '{raw}'"))))
        .transpose()?;
    let password_changed = get("password_changed_at")?.as_deref().map(parse_ts).transpose()?;
    Ok(Extra { profile, manager, password_changed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_field_has_a_column() {
        for field in profile::FIELDS {
            let stored = PROFILE_COLUMNS.iter().any(|(name, _)| *name == field.name) || field.name == HIRE_DATE.0;
            assert!(stored, "{} has no column", field.name);
        }
        for (_, column) in PROFILE_COLUMNS {
            assert!(super::super::USER_COLUMNS.contains(&format!("users.{column},")), "{column} is not selected");
        }
    }

    #[test]
    fn statements_number_their_parameters() {
        let extra = written_columns().len();
        assert!(INSERT_USER.contains(&format!("${}", 29 + extra)), "the manager last");
        assert!(!INSERT_USER.contains(&format!("${}", 30 + extra)));
        assert!(UPDATE_USER.contains(&format!("employee_hire_date = ${}", 26 + extra)));
        assert!(!UPDATE_USER.contains("manager_id"), "only set_manager writes the manager");
    }
}
