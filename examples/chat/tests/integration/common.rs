use std::time::Duration;

use example_testkit::{App, Gatehouse, Login, ScratchDb, Setup, WsClient};
use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(10);

/// Chat replicas sharing one database and one Redis namespace.
pub struct Chat {
    pub gatehouse: Gatehouse,
    pub db: ScratchDb,
    /// The chat's Redis namespace; its keys are deleted on drop.
    _namespace: gatehouse_testkit::Namespace,
    pub replicas: Vec<App>,
    pub http: reqwest::Client,
    env: Vec<(&'static str, String)>,
}

impl Chat {
    /// One replica, the fake Gatehouse.
    pub async fn new() -> Self {
        Self::start(Gatehouse::fake(Setup::default()).await, 1, &[]).await
    }

    pub async fn start(
        gatehouse: Gatehouse,
        replicas: usize,
        extra: &[(&'static str, &str)],
    ) -> Self {
        let db = ScratchDb::new("chat").await;
        let namespace = gatehouse_testkit::Namespace::new();
        let mut env = gatehouse.app_env();
        env.push(("DATABASE_URL", db.url.clone()));
        env.push(("REDIS_URL", gatehouse_testkit::redis_url()));
        env.push(("REDIS_NAMESPACE", namespace.as_str().to_owned()));
        env.push(("DB_POOL_SIZE", "4".into()));
        env.push(("WS_MESSAGE_RATE", "1000".into()));
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k, (*v).to_owned()));
        }
        let mut chat = Self {
            gatehouse,
            db,
            _namespace: namespace,
            replicas: Vec::new(),
            http: reqwest::Client::new(),
            env,
        };
        for _ in 0..replicas {
            chat.add_replica().await;
        }
        chat
    }

    pub async fn add_replica(&mut self) -> usize {
        self.add_replica_on(gatehouse_testkit::free_port()).await
    }

    /// A replica on a given port (one Gatehouse's CORS already allows).
    pub async fn add_replica_on(&mut self, port: u16) -> usize {
        let app = App::spawn_on("chat", port, &self.env).await;
        self.replicas.push(app);
        self.replicas.len() - 1
    }

    /// A socket on replica `r`, in `room`, authenticated as `login`.
    pub async fn join(&self, r: usize, room: &str, login: &Login) -> WsClient {
        let mut ws = WsClient::connect(&self.replicas[r].ws_url(room)).await;
        ws.auth(&login.access_token).await;
        ws
    }

    pub fn url(&self, r: usize) -> &str {
        &self.replicas[r].url
    }

    /// `GET path` on replica `r` with a bearer token.
    pub async fn get(&self, r: usize, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.url(r)));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn metrics(&self, r: usize) -> String {
        self.http
            .get(format!("{}/metrics", self.url(r)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stored messages of a room, oldest first: (id, author_id, body).
    pub async fn stored(&self, room: &str) -> Vec<(i64, uuid::Uuid, String)> {
        use diesel::QueryableByName;
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            author_id: uuid::Uuid,
            #[diesel(sql_type = diesel::sql_types::Text)]
            body: String,
        }
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT id, author_id, body FROM messages WHERE room = $1 ORDER BY id",
        )
        .bind::<diesel::sql_types::Text, _>(room)
        .load(&mut self.db.conn().await)
        .await
        .unwrap();
        rows.into_iter()
            .map(|r| (r.id, r.author_id, r.body))
            .collect()
    }
}

/// The value of a metric line (`name{labels} value`), 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
