-- Keyward schema 36: two lookups that read a tenant-sized set for want of an index. Every PIM
-- write ends the eligibilities past their end (`take_ended_eligibilities`: tenant and end time),
-- which walked all of the tenant's eligibilities; a change dual control holds counts its
-- requester's pending requests (tenant, requester, status), which walked every request the tenant
-- ever had (they are kept).
CREATE INDEX role_eligibilities_ending ON role_eligibilities(tenant_id, end_at);
CREATE INDEX service_desk_requests_requester ON service_desk_requests(tenant_id, requester_id, status);
