//! A user's profile: the Graph properties Keyward stores and returns for provisioning code
//! (`employeeId`, `companyName`, `officeLocation`, the postal address, `userType`, …) that no
//! authorization or sign-in rule reads. One table, [`FIELDS`], says for each its Graph name, the
//! name Entra's audit log gives it, and the format Graph enforces; parsing, validation, the audit
//! diff, the store's columns and the JSON shape all follow it.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::directory::DirectoryError;

/// How a profile property's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Free text of at most this many characters (Graph's documented maximum).
    Text(usize),
    /// One of these values, matched without case and stored as written here.
    Choice(&'static [&'static str]),
    /// A language tag: an ISO 639-1 language with an optional ISO 3166 region (`en`, `en-US`).
    Language,
    /// An RFC 3339 date and time (`employeeHireDate`), kept in Graph's form.
    DateTime,
    /// `DisablePasswordExpiration`, `DisableStrongPassword`, or both separated by a comma; Keyward
    /// refuses `DisableStrongPassword` rather than store a rule it would not apply.
    PasswordPolicies,
    /// Set by the directory only (a guest invitation's state): read and filtered, never written.
    ReadOnly,
}

/// One profile property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Graph's property name.
    pub name: &'static str,
    /// The property's name in Entra's "Update user" audit records.
    pub audit_name: &'static str,
    pub format: Format,
}

const fn field(name: &'static str, audit_name: &'static str, format: Format) -> Field {
    Field { name, audit_name, format }
}

/// The member/guest distinction (Graph's `userType`).
pub const USER_TYPES: &[&str] = &["Member", "Guest"];

/// Every profile property, in Graph's documentation order.
pub const FIELDS: &[Field] = &[
    field("ageGroup", "AgeGroup", Format::Choice(&["Minor", "NotAdult", "Adult"])),
    field("city", "City", Format::Text(128)),
    field("companyName", "CompanyName", Format::Text(64)),
    field("consentProvidedForMinor", "ConsentProvidedForMinor", Format::Choice(&["Granted", "Denied", "NotRequired"])),
    field("country", "Country", Format::Text(128)),
    field("creationType", "CreationType", Format::ReadOnly),
    field("employeeHireDate", "EmployeeHireDate", Format::DateTime),
    field("employeeId", "EmployeeId", Format::Text(16)),
    field("employeeType", "EmployeeType", Format::Text(64)),
    field("externalUserState", "ExternalUserState", Format::ReadOnly),
    field("faxNumber", "FacsimileTelephoneNumber", Format::Text(64)),
    field("officeLocation", "PhysicalDeliveryOfficeName", Format::Text(128)),
    field("passwordPolicies", "PasswordPolicies", Format::PasswordPolicies),
    field("postalCode", "PostalCode", Format::Text(40)),
    field("preferredLanguage", "PreferredLanguage", Format::Language),
    field("state", "State", Format::Text(128)),
    field("streetAddress", "StreetAddress", Format::Text(1024)),
    field("userType", "UserType", Format::Choice(USER_TYPES)),
];

/// The field named `name` (Graph's spelling, exactly).
pub fn find(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|it| it.name == name)
}

/// The profile values a user has; an absent key is Graph's `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile(BTreeMap<&'static str, String>);

impl Profile {
    /// A new member's profile: `userType` `Member` unless `Guest` was asked for.
    pub fn new_member() -> Profile {
        let mut res = Profile::default();
        res.0.insert("userType", "Member".into());
        res
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Sets (or with `None` clears) a field's stored value; the value must already be valid.
    pub fn set(&mut self, field: &'static Field, value: Option<String>) {
        match value {
            Some(value) => self.0.insert(field.name, value),
            None => self.0.remove(field.name),
        };
    }
}

/// Checks a value written through Graph and returns it as stored (`None` clears the property).
///
/// Empty or blank text clears, as elsewhere in the directory; errors are Graph's
/// `Invalid value specified for property '…' of resource 'User'`.
pub fn parse(field: &'static Field, value: Option<&str>) -> Result<Option<String>, DirectoryError> {
    let invalid = DirectoryError::InvalidValue { property: field.name, resource: "User" };
    let Some(value) = value.map(str::trim).filter(|it| !it.is_empty()) else {
        return match field.format {
            Format::ReadOnly => Err(DirectoryError::ReadOnly { property: field.name }),
            // Every user is a member or a guest.
            Format::Choice(choices) if choices == USER_TYPES => Err(invalid),
            _ => Ok(None),
        };
    };
    if !crate::directory::is_clean_text(value) {
        return Err(invalid);
    }
    let parsed = match field.format {
        Format::Text(max) => (value.chars().count() <= max).then(|| value.to_owned()),
        Format::Choice(choices) => choices.iter().find(|it| it.eq_ignore_ascii_case(value)).map(|it| (*it).to_owned()),
        Format::Language => is_language_tag(value).then(|| value.to_owned()),
        Format::DateTime => OffsetDateTime::parse(value, &Rfc3339).ok().map(graph_timestamp),
        Format::PasswordPolicies => {
            let policies = password_policies(value);
            if policies.as_deref().is_some_and(|it| it.contains("DisableStrongPassword")) {
                return Err(DirectoryError::StrongPasswordRequired);
            }
            policies
        }
        Format::ReadOnly => return Err(DirectoryError::ReadOnly { property: field.name }),
    };
    parsed.map(Some).ok_or(invalid)
}

/// Graph's timestamp form: UTC, whole seconds, `Z`.
pub fn graph_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// `en`, `en-US`, `zh-Hans`…: two or three letters, then optional subtags of two to eight
/// letters or digits.
fn is_language_tag(value: &str) -> bool {
    let mut parts = value.split('-');
    let lang = parts.next().unwrap_or_default();
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_alphabetic())
        && value.len() <= 35
        && parts.all(|it| (2..=8).contains(&it.len()) && it.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The password policies in Graph's canonical spelling, or `None` for anything else.
fn password_policies(value: &str) -> Option<String> {
    const KNOWN: [&str; 2] = ["DisablePasswordExpiration", "DisableStrongPassword"];
    let mut found = Vec::new();
    for part in value.split(',').map(str::trim) {
        let known = KNOWN.iter().find(|it| it.eq_ignore_ascii_case(part))?;
        if !found.contains(known) {
            found.push(*known);
        }
    }
    found.sort_unstable();
    Some(found.join(", "))
}

/// The "Update user" audit changes between two profiles: `(audit name, old, new)`, values as
/// Entra writes them (JSON arrays of strings, `[]` for none).
pub fn changes(old: &Profile, new: &Profile) -> Vec<(&'static str, String, String)> {
    let text = |value: Option<&str>| crate::json::string_array(value);
    FIELDS
        .iter()
        .filter(|it| old.get(it.name) != new.get(it.name))
        .map(|it| (it.audit_name, text(old.get(it.name)), text(new.get(it.name))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> &'static Field {
        find(name).expect("a profile field")
    }

    fn ok(name: &str, value: &str) -> Option<String> {
        parse(field(name), Some(value)).expect("valid")
    }

    fn refused(name: &str, value: &str) -> bool {
        parse(field(name), Some(value)).is_err()
    }

    #[test]
    fn lengths_are_graphs() {
        assert_eq!(ok("employeeId", "0123456789abcdef").as_deref(), Some("0123456789abcdef"));
        assert!(refused("employeeId", "0123456789abcdefg"));
        assert!(refused("companyName", &"x".repeat(65)));
        assert!(!refused("streetAddress", &"x".repeat(1024)));
        assert!(refused("streetAddress", &"x".repeat(1025)));
        assert!(refused("officeLocation", "line\nbreak"));
    }

    #[test]
    fn choices_are_canonical_and_closed() {
        assert_eq!(ok("userType", "guest").as_deref(), Some("Guest"));
        assert!(refused("userType", "Admin"));
        assert!(parse(field("userType"), None).is_err(), "every user is a member or a guest");
        assert_eq!(ok("ageGroup", "ADULT").as_deref(), Some("Adult"));
        assert_eq!(parse(field("ageGroup"), None).expect("clears"), None);
    }

    #[test]
    fn formats() {
        assert_eq!(ok("preferredLanguage", "en-US").as_deref(), Some("en-US"));
        assert!(refused("preferredLanguage", "English"));
        assert!(refused("preferredLanguage", "e"));
        assert_eq!(ok("employeeHireDate", "2024-05-01T08:30:00+02:00").as_deref(), Some("2024-05-01T06:30:00Z"));
        assert!(refused("employeeHireDate", "yesterday"));
        assert_eq!(ok("passwordPolicies", "disablePasswordExpiration").as_deref(), Some("DisablePasswordExpiration"));
        assert!(matches!(
            parse(field("passwordPolicies"), Some("DisablePasswordExpiration, DisableStrongPassword")),
            Err(DirectoryError::StrongPasswordRequired)
        ));
        assert!(refused("passwordPolicies", "None"));
        assert!(matches!(
            parse(field("creationType"), Some("Invitation")),
            Err(DirectoryError::ReadOnly { property: "creationType" })
        ));
    }

    #[test]
    fn changes_name_entras_properties() {
        let mut old = Profile::new_member();
        let mut new = old.clone();
        new.set(field("officeLocation"), Some("18/2111".into()));
        old.set(field("city"), Some("Oslo".into()));
        let found = changes(&old, &new);
        assert_eq!(
            found,
            vec![
                ("City", r#"["Oslo"]"#.to_owned(), "[]".to_owned()),
                ("PhysicalDeliveryOfficeName", "[]".to_owned(), r#"["18/2111"]"#.to_owned())
            ]
        );
    }

    #[test]
    fn every_field_is_a_user_property() {
        for field in FIELDS {
            assert!(crate::query::USER.properties.iter().any(|it| it.name == field.name), "{}", field.name);
        }
    }
}
