-- Deleted groups, kept 30 days for restore (`/directory/deletedItems`), as deleted users are
-- (0017): the group's row, members and owners move to exact copies of their tables, with the
-- time in `deleted_items` (kind 'group'). The group's own memberships and role assignments end
-- when it is deleted and are not kept. A later migration that changes one of these tables must
-- change its copy the same way (`INSERT … SELECT *` moves rows between them).
CREATE TABLE deleted_directory_groups AS SELECT * FROM directory_groups WHERE 0;
CREATE TABLE deleted_group_members AS SELECT * FROM group_members WHERE 0;
CREATE TABLE deleted_group_owners AS SELECT * FROM group_owners WHERE 0;
CREATE UNIQUE INDEX deleted_directory_groups_id ON deleted_directory_groups(id);
CREATE INDEX deleted_group_members_group ON deleted_group_members(group_id);
CREATE INDEX deleted_group_owners_group ON deleted_group_owners(group_id);
