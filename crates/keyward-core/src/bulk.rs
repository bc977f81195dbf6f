//! Bulk operations run by the server: one service-desk change for many users (a group's members,
//! an administrative unit's, a `$filter`'s, or a CSV's), with a dry run that changes nothing, and
//! a real run that records each user's outcome in the same transaction as the user's change, so a
//! run interrupted by a crash goes on where it stopped: no user done twice, none skipped.

use crate::signin::PerUserMfaState;

/// The most users one bulk operation may name.
pub const MAX_USERS: usize = 10_000;

/// What a bulk operation does to each user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    RequireReregistration,
    RevokeMfaSessions,
    SetPerUserMfa(PerUserMfaState),
    /// A role (its definition id) at a scope (`/` or `/administrativeUnits/{id}`).
    AssignRole {
        role: String,
        scope: String,
    },
    RemoveRole {
        role: String,
        scope: String,
    },
}

impl Operation {
    pub const NAMES: [&'static str; 5] =
        ["requireMfaReregistration", "revokeMfaSessions", "setPerUserMfa", "assignRole", "removeRole"];

    pub fn name(&self) -> &'static str {
        match self {
            Operation::RequireReregistration => Operation::NAMES[0],
            Operation::RevokeMfaSessions => Operation::NAMES[1],
            Operation::SetPerUserMfa(_) => Operation::NAMES[2],
            Operation::AssignRole { .. } => Operation::NAMES[3],
            Operation::RemoveRole { .. } => Operation::NAMES[4],
        }
    }

    /// The operation `name` with its parameters; the message says what is missing or wrong.
    pub fn parse(
        name: &str,
        state: Option<&str>,
        role: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Operation, String> {
        let role_and_scope = || -> Result<(String, String), String> {
            let role = role.filter(|it| !it.is_empty()).ok_or("roleDefinitionId is required for a role operation.")?;
            Ok((role.to_owned(), scope.unwrap_or("/").to_owned()))
        };
        if state.is_some() && name != "setPerUserMfa" {
            return Err(format!("perUserMfaState does not apply to {name}."));
        }
        if (role.is_some() || scope.is_some()) && !matches!(name, "assignRole" | "removeRole") {
            return Err(format!("roleDefinitionId and directoryScopeId do not apply to {name}."));
        }
        Ok(match name {
            "requireMfaReregistration" => Operation::RequireReregistration,
            "revokeMfaSessions" => Operation::RevokeMfaSessions,
            "setPerUserMfa" => {
                let state = state.ok_or("perUserMfaState is required for setPerUserMfa.")?;
                Operation::SetPerUserMfa(
                    PerUserMfaState::parse(state).ok_or_else(|| {
                        format!("perUserMfaState '{state}' is not one of disabled, enabled, enforced.")
                    })?,
                )
            }
            "assignRole" => {
                let (role, scope) = role_and_scope()?;
                Operation::AssignRole { role, scope }
            }
            "removeRole" => {
                let (role, scope) = role_and_scope()?;
                Operation::RemoveRole { role, scope }
            }
            other => {
                return Err(format!("operation '{other}' is not one of {}.", Operation::NAMES.join(", ")));
            }
        })
    }
}

/// What became (or would become) of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    /// Not done yet (a real run in progress, or interrupted).
    Pending,
    /// A dry run: this user would be changed.
    WouldChange,
    Done,
    /// Already in the target state: nothing to do.
    Already,
    /// Refused: the caller may not make this change to this user (the reason says why).
    Refused,
    /// Held by dual control for a second administrator (the reason names the request).
    Held,
    /// The change failed for another reason (the user was deleted meanwhile, …).
    Failed,
}

impl ItemState {
    pub const ALL: [ItemState; 7] = [
        ItemState::Pending,
        ItemState::WouldChange,
        ItemState::Done,
        ItemState::Already,
        ItemState::Refused,
        ItemState::Held,
        ItemState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::WouldChange => "wouldChange",
            ItemState::Done => "done",
            ItemState::Already => "already",
            ItemState::Refused => "refused",
            ItemState::Held => "heldForApproval",
            ItemState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<ItemState> {
        ItemState::ALL.into_iter().find(|it| it.as_str() == text)
    }
}

/// How many users ended in each state, in [`ItemState::ALL`]'s order.
pub fn count(states: impl IntoIterator<Item = ItemState>) -> [usize; 7] {
    let mut res = [0; 7];
    for state in states {
        if let Some(at) = ItemState::ALL.iter().position(|it| *it == state) {
            res[at] += 1;
        }
    }
    res
}

/// The user keys of a CSV: the `userPrincipalName` or `id` column (the first that is present),
/// one per data row, blank rows skipped. The message names the line of a problem.
pub fn csv_users(text: &str) -> Result<Vec<String>, String> {
    // Excel's "CSV UTF-8" starts with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
    let (_, header) = lines.next().ok_or("The CSV is empty: it needs a header row with userPrincipalName or id.")?;
    let columns: Vec<String> = split_csv(header).iter().map(|it| it.trim().to_ascii_lowercase()).collect();
    let at = ["userprincipalname", "id"]
        .iter()
        .find_map(|name| columns.iter().position(|it| it == name))
        .ok_or("The CSV's header row has no userPrincipalName or id column.")?;
    let mut res = Vec::new();
    for (number, line) in lines {
        let cells = split_csv(line);
        let key = cells.get(at).map(|it| it.trim()).unwrap_or_default();
        if key.is_empty() {
            return Err(format!("Line {} of the CSV has no user in its {} column.", number + 1, columns[at]));
        }
        res.push(key.to_owned());
    }
    Ok(res)
}

/// One CSV line's cells: commas separate, double quotes group (`""` is a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(it) = chars.next() {
        match (it, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(cell) = cells.last_mut() {
                    cell.push('"');
                }
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (other, _) => {
                if let Some(cell) = cells.last_mut() {
                    cell.push(other);
                }
            }
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_need_their_parameters() {
        assert_eq!(Operation::parse("revokeMfaSessions", None, None, None), Ok(Operation::RevokeMfaSessions));
        assert!(Operation::parse("setPerUserMfa", None, None, None).is_err());
        assert!(Operation::parse("setPerUserMfa", Some("sometimes"), None, None).is_err());
        assert_eq!(
            Operation::parse("setPerUserMfa", Some("enforced"), None, None),
            Ok(Operation::SetPerUserMfa(PerUserMfaState::Enforced))
        );
        assert!(Operation::parse("assignRole", None, None, None).is_err());
        assert!(Operation::parse("revokeMfaSessions", Some("enabled"), None, None).is_err(), "not its parameter");
        assert!(Operation::parse("setPerUserMfa", Some("enabled"), Some("r"), None).is_err());
        assert_eq!(
            Operation::parse("removeRole", None, Some("r"), None),
            Ok(Operation::RemoveRole { role: "r".into(), scope: "/".into() })
        );
        let unknown = Operation::parse("deleteEveryone", None, None, None).expect_err("unknown");
        assert!(unknown.contains("requireMfaReregistration"), "{unknown}");
        for name in Operation::NAMES {
            let state = (name == "setPerUserMfa").then_some("enabled");
            let role = name.ends_with("Role").then_some("r");
            let op = Operation::parse(name, state, role, None).expect("parses");
            assert_eq!(op.name(), name);
        }
    }

    #[test]
    fn a_csv_names_users_by_upn_or_id() {
        let users = csv_users("id,UserPrincipalName,note\n1,a@x.test,\"hi, there\"\n\n2,\"b@x.test\",x\n").expect("ok");
        assert_eq!(users, ["a@x.test", "b@x.test"], "userPrincipalName wins over id");
        assert_eq!(csv_users("ID\n7\n").expect("ids"), ["7"]);
        assert_eq!(csv_users("\u{feff}userPrincipalName\r\na@x.test\r\n").expect("bom"), ["a@x.test"]);
        assert!(csv_users("").is_err());
        assert!(csv_users("name\nx\n").expect_err("no column").contains("userPrincipalName"));
        assert!(csv_users("userPrincipalName,x\n,1\n").expect_err("blank").contains("Line 2"));
        assert_eq!(split_csv(r#"a,"b ""c""",d"#), ["a", "b \"c\"", "d"]);
    }

    #[test]
    fn states_read_back_and_count() {
        for state in ItemState::ALL {
            assert_eq!(ItemState::parse(state.as_str()), Some(state));
        }
        let counts = count([ItemState::Done, ItemState::Done, ItemState::Refused]);
        assert_eq!((counts[2], counts[4], counts[0]), (2, 1, 0));
    }
}
