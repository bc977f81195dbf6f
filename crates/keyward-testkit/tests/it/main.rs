//! Keyward's integration tests: one binary, every test on both SQLite and PostgreSQL.

mod api;
mod audit;
mod audit_chain;
mod methods;
mod oidc;
mod queries;
mod roles;
mod security;
mod signin;
mod story;

/// Defines `NAME_on_sqlite` and `NAME_on_postgres` from one `async fn NAME(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(keyward_testkit::Backend::Sqlite).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(keyward_testkit::Backend::Postgres).await;
                }
            )*
        }
    };
}
