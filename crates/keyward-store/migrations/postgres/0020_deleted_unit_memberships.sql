-- A deleted user's or group's administrative-unit memberships, kept with it (0017, 0018): a
-- restore or permanent delete is decided on them (a restricted management unit's object stays
-- under that unit's administrators) and a restore brings them back for units that still exist.
CREATE TABLE deleted_administrative_unit_members (LIKE administrative_unit_members);
CREATE INDEX deleted_administrative_unit_members_member ON deleted_administrative_unit_members(member_id);
