//! Password policy: minimum length, a banned list of common passwords, and the user's own name.

/// Why a password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("The password must be at least 8 characters long")]
    TooShort,
    #[error("The password must be at most 256 characters long")]
    TooLong,
    #[error("The password is too common; choose a less predictable one")]
    Banned,
    #[error(
        "The password must mix three of lowercase letters, uppercase letters, digits and symbols, or be at least 15 characters long"
    )]
    TooSimple,
    #[error("The password must not contain your name or user name")]
    ContainsName,
}

/// Common passwords and fragments refused outright (case-insensitive, after removing digits and symbols).
const BANNED: &[&str] = &[
    "password",
    "passw0rd",
    "qwerty",
    "qwertyuiop",
    "letmein",
    "welcome",
    "iloveyou",
    "admin",
    "administrator",
    "abc",
    "abcdef",
    "abcdefgh",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "master",
    "shadow",
    "superman",
    "trustno",
    "changeme",
    "secret",
    "login",
    "keyward",
    "azure",
    "microsoft",
    "contoso",
];

/// Checks a new password against the policy; `names` are the user's display name and UPN alias.
pub fn check(password: &str, names: &[&str]) -> Result<(), PasswordError> {
    let n_chars = password.chars().count();
    if n_chars < 8 {
        return Err(PasswordError::TooShort);
    }
    if n_chars > 256 {
        return Err(PasswordError::TooLong);
    }
    let lowered = password.to_lowercase();
    // Undo common character substitutions, then keep letters only, as Entra's banned-password
    // check normalises before matching.
    let letters: String = lowered
        .chars()
        .filter_map(|c| match c {
            '@' | '4' => Some('a'),
            '0' => Some('o'),
            '1' | '!' => Some('i'),
            '3' => Some('e'),
            '$' | '5' => Some('s'),
            '7' => Some('t'),
            c if c.is_alphabetic() => Some(c),
            _ => None,
        })
        .collect();
    if letters.is_empty() {
        return Err(PasswordError::Banned);
    }
    let is_banned =
        BANNED.iter().any(|word| letters.contains(word) && letters.chars().count() < word.chars().count() + 5);
    if is_banned {
        return Err(PasswordError::Banned);
    }
    let distinct: std::collections::BTreeSet<char> = lowered.chars().collect();
    if distinct.len() < 4 {
        return Err(PasswordError::Banned);
    }
    let n_kinds = [
        password.chars().any(char::is_lowercase),
        password.chars().any(char::is_uppercase),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ]
    .into_iter()
    .filter(|it| *it)
    .count();
    if n_kinds < 3 && n_chars < 15 {
        return Err(PasswordError::TooSimple);
    }
    for name in names {
        for part in name.split(|c: char| !c.is_alphanumeric()) {
            if part.chars().count() >= 3 && lowered.contains(&part.to_lowercase()) {
                return Err(PasswordError::ContainsName);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_short_common_and_personal_passwords() {
        let names = ["Adele Vance", "adele.vance"];
        let cases = [
            ("short1!", Err(PasswordError::TooShort)),
            ("Password123!", Err(PasswordError::Banned)),
            ("P@ssw0rd", Err(PasswordError::Banned)),
            ("aaaaaaaa", Err(PasswordError::Banned)),
            ("12345678", Err(PasswordError::TooSimple)),
            ("harbourlantern", Err(PasswordError::TooSimple)),
            ("Harbour-Lantern-92", Ok(())),
            ("VanceRocks42!", Err(PasswordError::ContainsName)),
            ("correct horse battery", Ok(())),
        ];
        for (password, expected) in cases {
            assert_eq!(check(password, &names), expected, "{password}");
        }
    }
}
