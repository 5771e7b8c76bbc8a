//! One PostgreSQL database per test, cloned from a migrated template.
//! The template is named after a hash of the migrations, built once under an
//! advisory lock, and `CREATE DATABASE … TEMPLATE` takes milliseconds.

use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

const TEMPLATE_LOCK: i64 = 0x7465_7374_7470_6c00;

fn migrations_hash() -> String {
    let mut hasher = Sha256::new();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        for file in ["up.sql", "down.sql"] {
            if let Ok(bytes) = std::fs::read(dir.join(file)) {
                hasher.update(dir.file_name().unwrap().as_encoded_bytes());
                hasher.update(&bytes);
            }
        }
    }
    hex::encode(&hasher.finalize()[..6])
}

async fn admin_conn() -> AsyncPgConnection {
    let url = format!("{}/postgres", crate::pg_server_url());
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"))
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("gatehouse_tpl_{}", migrations_hash());
            let mut conn = admin_conn().await;
            diesel::sql_query("SELECT pg_advisory_lock($1)")
                .bind::<BigInt, _>(TEMPLATE_LOCK)
                .execute(&mut conn)
                .await
                .unwrap();
            let exists = diesel::sql_query(format!(
                "SELECT 1 AS one FROM pg_database WHERE datname = '{name}'"
            ))
            .execute(&mut conn)
            .await
            .unwrap()
                > 0;
            if !exists {
                let building = format!("{name}_building");
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {building}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                diesel::sql_query(format!("CREATE DATABASE {building}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let url = format!("{}/{building}", crate::pg_server_url());
                gatehouse_shared::db::run_migrations(&url).await.unwrap();
                diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            diesel::sql_query("SELECT pg_advisory_unlock($1)")
                .bind::<BigInt, _>(TEMPLATE_LOCK)
                .execute(&mut conn)
                .await
                .unwrap();
            name
        })
        .await
}

/// A migrated database of its own, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let template = template().await;
        let name = format!("gatehouse_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin_conn().await;
        // CREATE … TEMPLATE fails while another session is connected to the
        // template; retry briefly in case a parallel test is cloning it.
        let mut tries = 0;
        loop {
            match diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .execute(&mut conn)
                .await
            {
                Ok(_) => break,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot create test database: {e}"),
            }
        }
        let url = format!("{}/{name}", crate::pg_server_url());
        Self { name, url }
    }

    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DB").is_some() {
            return;
        }
        let name = self.name.clone();
        // Drop runs outside async context: use a short-lived runtime on a
        // plain thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let mut conn = admin_conn().await;
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            });
        })
        .join();
    }
}
