-- Deleted groups, kept 30 days for restore (`/directory/deletedItems`), as deleted users are
-- (0017): the group's row, members and owners move to exact copies of their tables, with the
-- time in `deleted_items` (kind 'group'). The group's own memberships and role assignments end
-- when it is deleted and are not kept. A later migration that changes one of these tables must
-- change its copy the same way (`INSERT … SELECT *` moves rows between them).
CREATE TABLE deleted_directory_groups (LIKE directory_groups);
CREATE TABLE deleted_group_members (LIKE group_members);
CREATE TABLE deleted_group_owners (LIKE group_owners);
CREATE UNIQUE INDEX deleted_directory_groups_id ON deleted_directory_groups(id);
CREATE INDEX deleted_group_members_group ON deleted_group_members(group_id);
CREATE INDEX deleted_group_owners_group ON deleted_group_owners(group_id);
