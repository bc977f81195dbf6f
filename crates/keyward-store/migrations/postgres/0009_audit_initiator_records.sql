-- Keyward schema 9 changes SQLite only: there each initiator's records get copies that sit
-- together (audit_initiators). PostgreSQL keeps no copies (see schema 8) and keeps querying an
-- initiator's records through the audit_records_initiator index.
SELECT 1;
