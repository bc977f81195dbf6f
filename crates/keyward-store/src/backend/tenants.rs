//! Tenants, their domains and settings.
//!
//! `impl_tenant_store!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`.

/// Implements `TenantStore` for a backend's transaction type.
macro_rules! impl_tenant_store {
    ($tx:ident, $db:ty) => {
        #[async_trait]
        impl TenantStore for $tx {
            async fn insert_tenant(&mut self, tenant: &Tenant) -> Result<(), StoreError> {
                q::query("INSERT INTO tenants (id, display_name, created_at) VALUES ($1, $2, $3)")
                    .bind(tenant.id.as_str())
                    .bind(&tenant.display_name)
                    .bind(fmt_ts(tenant.created))
                    .execute(&mut *self.0)
                    .await?;
                for domain in &tenant.domains {
                    q::query(concat!(
                        "INSERT INTO domains (name, tenant_id, is_default, is_initial) VALUES ",
                        "($1, $2, $3, $4)"
                    ))
                    .bind(domain.name.to_lowercase())
                    .bind(tenant.id.as_str())
                    .bind(domain.is_default)
                    .bind(domain.is_initial)
                    .execute(&mut *self.0)
                    .await?;
                }
                Ok(())
            }

            async fn tenant_display_name(&mut self, id: &ObjectId) -> Result<Option<String>, StoreError> {
                q::query_scalar("SELECT display_name FROM tenants WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    .map_err(db)
            }

            async fn get_tenant(&mut self, id: &ObjectId) -> Result<Option<Tenant>, StoreError> {
                let row = q::query("SELECT id, display_name, created_at FROM tenants WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.0)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let domains = q::query(concat!(
                    "SELECT name, is_default, is_initial FROM domains WHERE tenant_id = $1 ",
                    "ORDER BY name"
                ))
                .bind(id.as_str())
                .fetch_all(&mut *self.0)
                .await?;
                Ok(Some(Tenant {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    display_name: row.try_get(1)?,
                    created: parse_ts(&row.try_get::<String, _>(2)?)?,
                    domains: domains
                        .iter()
                        .map(|it| {
                            Ok(Domain { name: it.try_get(0)?, is_default: it.try_get(1)?, is_initial: it.try_get(2)? })
                        })
                        .collect::<Result<_, StoreError>>()?,
                }))
            }

            async fn list_tenants(&mut self) -> Result<Vec<Tenant>, StoreError> {
                let ids: Vec<String> =
                    q::query_scalar("SELECT id FROM tenants ORDER BY created_at, id").fetch_all(&mut *self.0).await?;
                let mut res = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(tenant) = self.get_tenant(&oid(&id)?).await? {
                        res.push(tenant);
                    }
                }
                Ok(res)
            }
        }
    };
}
