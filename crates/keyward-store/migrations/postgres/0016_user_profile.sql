-- The user's profile (keyward-core's `profile.rs`): each property as written and lowercased for
-- `$filter`; the hire date as a stored timestamp; when the password was last set; the manager.
-- A user without a stated type is a member, and the password of an existing user counts as
-- set when the user was created (the closest time known).
ALTER TABLE users ADD COLUMN age_group TEXT;
ALTER TABLE users ADD COLUMN age_group_lc TEXT;
ALTER TABLE users ADD COLUMN city TEXT;
ALTER TABLE users ADD COLUMN city_lc TEXT;
ALTER TABLE users ADD COLUMN company_name TEXT;
ALTER TABLE users ADD COLUMN company_name_lc TEXT;
ALTER TABLE users ADD COLUMN consent_provided_for_minor TEXT;
ALTER TABLE users ADD COLUMN consent_provided_for_minor_lc TEXT;
ALTER TABLE users ADD COLUMN country TEXT;
ALTER TABLE users ADD COLUMN country_lc TEXT;
ALTER TABLE users ADD COLUMN creation_type TEXT;
ALTER TABLE users ADD COLUMN creation_type_lc TEXT;
ALTER TABLE users ADD COLUMN employee_id TEXT;
ALTER TABLE users ADD COLUMN employee_id_lc TEXT;
ALTER TABLE users ADD COLUMN employee_type TEXT;
ALTER TABLE users ADD COLUMN employee_type_lc TEXT;
ALTER TABLE users ADD COLUMN external_user_state TEXT;
ALTER TABLE users ADD COLUMN external_user_state_lc TEXT;
ALTER TABLE users ADD COLUMN fax_number TEXT;
ALTER TABLE users ADD COLUMN fax_number_lc TEXT;
ALTER TABLE users ADD COLUMN office_location TEXT;
ALTER TABLE users ADD COLUMN office_location_lc TEXT;
ALTER TABLE users ADD COLUMN password_policies TEXT;
ALTER TABLE users ADD COLUMN password_policies_lc TEXT;
ALTER TABLE users ADD COLUMN postal_code TEXT;
ALTER TABLE users ADD COLUMN postal_code_lc TEXT;
ALTER TABLE users ADD COLUMN preferred_language TEXT;
ALTER TABLE users ADD COLUMN preferred_language_lc TEXT;
ALTER TABLE users ADD COLUMN state TEXT;
ALTER TABLE users ADD COLUMN state_lc TEXT;
ALTER TABLE users ADD COLUMN street_address TEXT;
ALTER TABLE users ADD COLUMN street_address_lc TEXT;
ALTER TABLE users ADD COLUMN user_type TEXT;
ALTER TABLE users ADD COLUMN user_type_lc TEXT;
ALTER TABLE users ADD COLUMN employee_hire_date TEXT;
ALTER TABLE users ADD COLUMN password_changed_at TEXT;
-- Always NULL: Keyward's directory is not synchronized from on-premises.
ALTER TABLE users ADD COLUMN on_premises_sync_enabled BOOLEAN;
-- The store clears it when the manager is deleted.
ALTER TABLE users ADD COLUMN manager_id TEXT;
UPDATE users SET user_type = 'Member', user_type_lc = 'member';
UPDATE users SET password_changed_at = created_at WHERE password_hash IS NOT NULL;
CREATE INDEX users_manager ON users(manager_id);
CREATE INDEX users_employee_id ON users(tenant_id, employee_id_lc);
