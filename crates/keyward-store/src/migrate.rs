//! Numbered migrations, one list per dialect, embedded in the binary.

/// One migration: its number, its name, and its SQL for one dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// SQLite migrations, in order.
pub const MIGRATIONS_SQLITE: &[Migration] = &[
    Migration { version: 1, name: "0001_directory.sql", sql: include_str!("../migrations/sqlite/0001_directory.sql") },
    Migration { version: 2, name: "0002_roles.sql", sql: include_str!("../migrations/sqlite/0002_roles.sql") },
    Migration {
        version: 3,
        name: "0003_service_principals.sql",
        sql: include_str!("../migrations/sqlite/0003_service_principals.sql"),
    },
    Migration { version: 4, name: "0004_sign_in.sql", sql: include_str!("../migrations/sqlite/0004_sign_in.sql") },
    Migration { version: 5, name: "0005_oauth.sql", sql: include_str!("../migrations/sqlite/0005_oauth.sql") },
    Migration {
        version: 6,
        name: "0006_auth_methods.sql",
        sql: include_str!("../migrations/sqlite/0006_auth_methods.sql"),
    },
    Migration {
        version: 7,
        name: "0007_audit_target_time.sql",
        sql: include_str!("../migrations/sqlite/0007_audit_target_time.sql"),
    },
    Migration {
        version: 8,
        name: "0008_audit_target_records.sql",
        sql: include_str!("../migrations/sqlite/0008_audit_target_records.sql"),
    },
    Migration {
        version: 9,
        name: "0009_audit_initiator_records.sql",
        sql: include_str!("../migrations/sqlite/0009_audit_initiator_records.sql"),
    },
    Migration { version: 10, name: "0010_consent.sql", sql: include_str!("../migrations/sqlite/0010_consent.sql") },
    Migration {
        version: 11,
        name: "0011_portal_activity.sql",
        sql: include_str!("../migrations/sqlite/0011_portal_activity.sql"),
    },
    Migration {
        version: 12,
        name: "0012_registration_counts.sql",
        sql: include_str!("../migrations/sqlite/0012_registration_counts.sql"),
    },
    Migration {
        version: 13,
        name: "0013_sign_in_kinds.sql",
        sql: include_str!("../migrations/sqlite/0013_sign_in_kinds.sql"),
    },
    Migration {
        version: 14,
        name: "0014_methods_policy.sql",
        sql: include_str!("../migrations/sqlite/0014_methods_policy.sql"),
    },
    Migration { version: 15, name: "0015_passkeys.sql", sql: include_str!("../migrations/sqlite/0015_passkeys.sql") },
    Migration {
        version: 16,
        name: "0016_user_profile.sql",
        sql: include_str!("../migrations/sqlite/0016_user_profile.sql"),
    },
    Migration {
        version: 17,
        name: "0017_deleted_items.sql",
        sql: include_str!("../migrations/sqlite/0017_deleted_items.sql"),
    },
    Migration {
        version: 18,
        name: "0018_deleted_groups.sql",
        sql: include_str!("../migrations/sqlite/0018_deleted_groups.sql"),
    },
    Migration {
        version: 19,
        name: "0019_application_unique_name.sql",
        sql: include_str!("../migrations/sqlite/0019_application_unique_name.sql"),
    },
    Migration {
        version: 20,
        name: "0020_deleted_unit_memberships.sql",
        sql: include_str!("../migrations/sqlite/0020_deleted_unit_memberships.sql"),
    },
    Migration {
        version: 21,
        name: "0021_deleted_user_roles.sql",
        sql: include_str!("../migrations/sqlite/0021_deleted_user_roles.sql"),
    },
    Migration {
        version: 22,
        name: "0022_agent_limits.sql",
        sql: include_str!("../migrations/sqlite/0022_agent_limits.sql"),
    },
    Migration { version: 23, name: "0023_pim.sql", sql: include_str!("../migrations/sqlite/0023_pim.sql") },
    Migration {
        version: 24,
        name: "0024_notifications.sql",
        sql: include_str!("../migrations/sqlite/0024_notifications.sql"),
    },
    Migration {
        version: 25,
        name: "0025_dual_control.sql",
        sql: include_str!("../migrations/sqlite/0025_dual_control.sql"),
    },
    Migration { version: 26, name: "0026_bulk.sql", sql: include_str!("../migrations/sqlite/0026_bulk.sql") },
    Migration {
        version: 27,
        name: "0027_caller_verification.sql",
        sql: include_str!("../migrations/sqlite/0027_caller_verification.sql"),
    },
    Migration {
        version: 28,
        name: "0028_users_by_tenant_and_id.sql",
        sql: include_str!("../migrations/sqlite/0028_users_by_tenant_and_id.sql"),
    },
    Migration {
        version: 29,
        name: "0029_cascade_indexes.sql",
        sql: include_str!("../migrations/sqlite/0029_cascade_indexes.sql"),
    },
    Migration {
        version: 30,
        name: "0030_refresh_token_client_auth.sql",
        sql: include_str!("../migrations/sqlite/0030_refresh_token_client_auth.sql"),
    },
    Migration {
        version: 31,
        name: "0031_activated_directory_roles.sql",
        sql: include_str!("../migrations/sqlite/0031_activated_directory_roles.sql"),
    },
    Migration {
        version: 32,
        name: "0032_deleted_applications.sql",
        sql: include_str!("../migrations/sqlite/0032_deleted_applications.sql"),
    },
    Migration {
        version: 33,
        name: "0033_client_version.sql",
        sql: include_str!("../migrations/sqlite/0033_client_version.sql"),
    },
    Migration {
        version: 34,
        name: "0034_sign_in_partial_indexes.sql",
        sql: include_str!("../migrations/sqlite/0034_sign_in_partial_indexes.sql"),
    },
    Migration {
        version: 35,
        name: "0035_sign_in_short_records.sql",
        sql: include_str!("../migrations/sqlite/0035_sign_in_short_records.sql"),
    },
    Migration {
        version: 36,
        name: "0036_tenant_lookups.sql",
        sql: include_str!("../migrations/sqlite/0036_tenant_lookups.sql"),
    },
    Migration {
        version: 37,
        name: "0037_grants_by_client.sql",
        sql: include_str!("../migrations/sqlite/0037_grants_by_client.sql"),
    },
    Migration {
        version: 38,
        name: "0038_revoked_refresh_families.sql",
        sql: include_str!("../migrations/sqlite/0038_revoked_refresh_families.sql"),
    },
];

/// PostgreSQL migrations, in order; same numbers and names as SQLite.
pub const MIGRATIONS_POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_directory.sql",
        sql: include_str!("../migrations/postgres/0001_directory.sql"),
    },
    Migration { version: 2, name: "0002_roles.sql", sql: include_str!("../migrations/postgres/0002_roles.sql") },
    Migration {
        version: 3,
        name: "0003_service_principals.sql",
        sql: include_str!("../migrations/postgres/0003_service_principals.sql"),
    },
    Migration { version: 4, name: "0004_sign_in.sql", sql: include_str!("../migrations/postgres/0004_sign_in.sql") },
    Migration { version: 5, name: "0005_oauth.sql", sql: include_str!("../migrations/postgres/0005_oauth.sql") },
    Migration {
        version: 6,
        name: "0006_auth_methods.sql",
        sql: include_str!("../migrations/postgres/0006_auth_methods.sql"),
    },
    Migration {
        version: 7,
        name: "0007_audit_target_time.sql",
        sql: include_str!("../migrations/postgres/0007_audit_target_time.sql"),
    },
    Migration {
        version: 8,
        name: "0008_audit_target_records.sql",
        sql: include_str!("../migrations/postgres/0008_audit_target_records.sql"),
    },
    Migration {
        version: 9,
        name: "0009_audit_initiator_records.sql",
        sql: include_str!("../migrations/postgres/0009_audit_initiator_records.sql"),
    },
    Migration { version: 10, name: "0010_consent.sql", sql: include_str!("../migrations/postgres/0010_consent.sql") },
    Migration {
        version: 11,
        name: "0011_portal_activity.sql",
        sql: include_str!("../migrations/postgres/0011_portal_activity.sql"),
    },
    Migration {
        version: 12,
        name: "0012_registration_counts.sql",
        sql: include_str!("../migrations/postgres/0012_registration_counts.sql"),
    },
    Migration {
        version: 13,
        name: "0013_sign_in_kinds.sql",
        sql: include_str!("../migrations/postgres/0013_sign_in_kinds.sql"),
    },
    Migration {
        version: 14,
        name: "0014_methods_policy.sql",
        sql: include_str!("../migrations/postgres/0014_methods_policy.sql"),
    },
    Migration { version: 15, name: "0015_passkeys.sql", sql: include_str!("../migrations/postgres/0015_passkeys.sql") },
    Migration {
        version: 16,
        name: "0016_user_profile.sql",
        sql: include_str!("../migrations/postgres/0016_user_profile.sql"),
    },
    Migration {
        version: 17,
        name: "0017_deleted_items.sql",
        sql: include_str!("../migrations/postgres/0017_deleted_items.sql"),
    },
    Migration {
        version: 18,
        name: "0018_deleted_groups.sql",
        sql: include_str!("../migrations/postgres/0018_deleted_groups.sql"),
    },
    Migration {
        version: 19,
        name: "0019_application_unique_name.sql",
        sql: include_str!("../migrations/postgres/0019_application_unique_name.sql"),
    },
    Migration {
        version: 20,
        name: "0020_deleted_unit_memberships.sql",
        sql: include_str!("../migrations/postgres/0020_deleted_unit_memberships.sql"),
    },
    Migration {
        version: 21,
        name: "0021_deleted_user_roles.sql",
        sql: include_str!("../migrations/postgres/0021_deleted_user_roles.sql"),
    },
    Migration {
        version: 22,
        name: "0022_agent_limits.sql",
        sql: include_str!("../migrations/postgres/0022_agent_limits.sql"),
    },
    Migration { version: 23, name: "0023_pim.sql", sql: include_str!("../migrations/postgres/0023_pim.sql") },
    Migration {
        version: 24,
        name: "0024_notifications.sql",
        sql: include_str!("../migrations/postgres/0024_notifications.sql"),
    },
    Migration {
        version: 25,
        name: "0025_dual_control.sql",
        sql: include_str!("../migrations/postgres/0025_dual_control.sql"),
    },
    Migration { version: 26, name: "0026_bulk.sql", sql: include_str!("../migrations/postgres/0026_bulk.sql") },
    Migration {
        version: 27,
        name: "0027_caller_verification.sql",
        sql: include_str!("../migrations/postgres/0027_caller_verification.sql"),
    },
    Migration {
        version: 28,
        name: "0028_users_by_tenant_and_id.sql",
        sql: include_str!("../migrations/postgres/0028_users_by_tenant_and_id.sql"),
    },
    Migration {
        version: 29,
        name: "0029_cascade_indexes.sql",
        sql: include_str!("../migrations/postgres/0029_cascade_indexes.sql"),
    },
    Migration {
        version: 30,
        name: "0030_refresh_token_client_auth.sql",
        sql: include_str!("../migrations/postgres/0030_refresh_token_client_auth.sql"),
    },
    Migration {
        version: 31,
        name: "0031_activated_directory_roles.sql",
        sql: include_str!("../migrations/postgres/0031_activated_directory_roles.sql"),
    },
    Migration {
        version: 32,
        name: "0032_deleted_applications.sql",
        sql: include_str!("../migrations/postgres/0032_deleted_applications.sql"),
    },
    Migration {
        version: 33,
        name: "0033_client_version.sql",
        sql: include_str!("../migrations/postgres/0033_client_version.sql"),
    },
    Migration {
        version: 34,
        name: "0034_sign_in_partial_indexes.sql",
        sql: include_str!("../migrations/postgres/0034_sign_in_partial_indexes.sql"),
    },
    Migration {
        version: 35,
        name: "0035_sign_in_short_records.sql",
        sql: include_str!("../migrations/postgres/0035_sign_in_short_records.sql"),
    },
    Migration {
        version: 36,
        name: "0036_tenant_lookups.sql",
        sql: include_str!("../migrations/postgres/0036_tenant_lookups.sql"),
    },
    Migration {
        version: 37,
        name: "0037_grants_by_client.sql",
        sql: include_str!("../migrations/postgres/0037_grants_by_client.sql"),
    },
    Migration {
        version: 38,
        name: "0038_revoked_refresh_families.sql",
        sql: include_str!("../migrations/postgres/0038_revoked_refresh_families.sql"),
    },
];

pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    fn files(dialect: &str) -> BTreeSet<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dialect);
        std::fs::read_dir(dir)
            .expect("migrations directory")
            .map(|it| it.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn both_dialects_have_the_same_numbered_migrations_and_embed_them_all() {
        assert_eq!(files("sqlite"), files("postgres"), "migrations/sqlite and migrations/postgres diverge");
        let embedded = |list: &[Migration]| -> BTreeSet<String> { list.iter().map(|it| it.name.to_owned()).collect() };
        assert_eq!(embedded(MIGRATIONS_SQLITE), files("sqlite"), "a migration file is not embedded");
        assert_eq!(embedded(MIGRATIONS_POSTGRES), files("postgres"), "a migration file is not embedded");
        for list in [MIGRATIONS_SQLITE, MIGRATIONS_POSTGRES] {
            for (idx, migration) in list.iter().enumerate() {
                let expected = i64::try_from(idx).expect("small") + 1;
                assert_eq!(migration.version, expected, "{} is out of sequence", migration.name);
                assert!(
                    migration.name.starts_with(&format!("{expected:04}_")),
                    "{} must start with its number",
                    migration.name
                );
            }
        }
        let versions =
            |list: &[Migration]| -> Vec<(i64, &str)> { list.iter().map(|it| (it.version, it.name)).collect() };
        assert_eq!(versions(MIGRATIONS_SQLITE), versions(MIGRATIONS_POSTGRES));
    }
}
