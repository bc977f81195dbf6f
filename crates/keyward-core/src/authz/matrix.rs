//! Entra's who-may-act-on-whom tables as data: "Who can reset passwords" and "Who can perform sensitive actions".
//!
//! A column says which target roles an actor role may act on; a target is actionable only if
//! every role it holds is in that list. "Everyone" columns (Privileged Authentication
//! Administrator, Global Administrator) reach every user, including members and owners of
//! role-assignable groups and holders of roles scoped to restricted-management units.

use crate::authz::catalog::roles::*;

/// Which targets an actor role reaches under one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every user.
    Everyone,
    /// Users holding no role, or only roles in this list, who are neither members nor owners of a
    /// role-assignable group nor holders of a role scoped to a restricted-management unit.
    Roles(&'static [&'static str]),
}

/// One actor column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub actor_role: &'static str,
    pub reach: Reach,
}

/// Non-admins only: for built-in roles that hold a governed action but have no column (Security
/// Operator, Partner Tier1 Support). UNCONFIRMED in Entra's documentation; the careful choice.
pub const NON_ADMINS_ONLY: Reach = Reach::Roles(&[]);

/// The Authentication Administrator's column, the same in both tables.
const AUTHENTICATION_ADMINISTRATOR_REACH: Reach = Reach::Roles(&[
    AUTHENTICATION_ADMINISTRATOR,
    DIRECTORY_READERS,
    GUEST_INVITER,
    MESSAGE_CENTER_READER,
    PASSWORD_ADMINISTRATOR,
    REPORTS_READER,
    USER_EXPERIENCE_SUCCESS_MANAGER,
    USAGE_SUMMARY_REPORTS_READER,
]);

/// The User Administrator's column, the same in both tables.
const USER_ADMINISTRATOR_REACH: Reach = Reach::Roles(&[
    DIRECTORY_READERS,
    GROUPS_ADMINISTRATOR,
    GUEST_INVITER,
    HELPDESK_ADMINISTRATOR,
    MESSAGE_CENTER_READER,
    PASSWORD_ADMINISTRATOR,
    REPORTS_READER,
    USER_ADMINISTRATOR,
    USER_EXPERIENCE_SUCCESS_MANAGER,
    USAGE_SUMMARY_REPORTS_READER,
]);

/// Entra's "Who can reset passwords" table: password reset, refresh-token invalidation, and
/// authentication methods.
pub const PASSWORD_RESET: &[Column] = &[
    Column {
        actor_role: PASSWORD_ADMINISTRATOR,
        reach: Reach::Roles(&[DIRECTORY_READERS, GUEST_INVITER, PASSWORD_ADMINISTRATOR]),
    },
    Column {
        actor_role: HELPDESK_ADMINISTRATOR,
        reach: Reach::Roles(&[
            DIRECTORY_READERS,
            GUEST_INVITER,
            HELPDESK_ADMINISTRATOR,
            MESSAGE_CENTER_READER,
            PASSWORD_ADMINISTRATOR,
            REPORTS_READER,
            USER_EXPERIENCE_SUCCESS_MANAGER,
            USAGE_SUMMARY_REPORTS_READER,
        ]),
    },
    Column { actor_role: AUTHENTICATION_ADMINISTRATOR, reach: AUTHENTICATION_ADMINISTRATOR_REACH },
    Column { actor_role: USER_ADMINISTRATOR, reach: USER_ADMINISTRATOR_REACH },
    Column { actor_role: PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, reach: Reach::Everyone },
    Column { actor_role: GLOBAL_ADMINISTRATOR, reach: Reach::Everyone },
    Column { actor_role: PARTNER_TIER2_SUPPORT, reach: Reach::Everyone },
];

/// Entra's "Who can perform sensitive actions" table: enabling, disabling, deleting and
/// restoring users, and changing `userPrincipalName`, `passwordProfile`, `mobilePhone`,
/// `businessPhones`, `otherMails`.
pub const SENSITIVE_ACTIONS: &[Column] = &[
    Column { actor_role: AUTHENTICATION_ADMINISTRATOR, reach: AUTHENTICATION_ADMINISTRATOR_REACH },
    Column { actor_role: USER_ADMINISTRATOR, reach: USER_ADMINISTRATOR_REACH },
    Column { actor_role: PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, reach: Reach::Everyone },
    Column { actor_role: GLOBAL_ADMINISTRATOR, reach: Reach::Everyone },
];

/// The reach of a built-in actor role under a table; roles without a column reach non-admins only.
pub fn reach(table: &[Column], actor_role: &str) -> Reach {
    table.iter().find(|it| it.actor_role.eq_ignore_ascii_case(actor_role)).map_or(NON_ADMINS_ONLY, |it| it.reach)
}
