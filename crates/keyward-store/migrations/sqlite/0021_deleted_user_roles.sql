-- What a deleted user held when it was deleted, so restoring or removing it for good is decided
-- as acting on that user would have been (Entra's sensitive-action table, unit-scoped roles act
-- only on non-administrators): the role ids, whether one was scoped to a restricted management
-- unit, and whether it was in a role-assignable group. NULL roles: deleted before Keyward kept
-- them, decided as for a Global Administrator.
ALTER TABLE deleted_items ADD COLUMN held_roles TEXT;
ALTER TABLE deleted_items ADD COLUMN held_restricted_scope BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE deleted_items ADD COLUMN held_protected BOOLEAN NOT NULL DEFAULT FALSE;
